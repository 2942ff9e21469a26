package org.mnv3.demo

import org.json.JSONObject

/** How pixels map to input channels, from `input.channel_order` in model.json. */
enum class ChannelOrder(val jsonName: String, val channels: Int) {
    GRAY("gray", 1),
    RGB("RGB", 3);

    companion object {
        fun fromJson(name: String): ChannelOrder =
            values().firstOrNull { it.jsonName == name }
                ?: throw IllegalArgumentException(
                    "unsupported input.channel_order '$name' (expected \"gray\" or \"RGB\")"
                )
    }
}

/** The `input` block of model.json: one float32 NCHW tensor of shape [1, C, H, W]. */
class InputSpec(shape: LongArray, val channelOrder: ChannelOrder) {
    val shape: LongArray = shape.copyOf()

    init {
        require(shape.size == 4) { "input.shape must be [1, C, H, W], got ${shape.contentToString()}" }
        require(shape[0] == 1L) { "input.shape batch must be 1, got ${shape[0]}" }
        require(shape[1] == channelOrder.channels.toLong()) {
            "input.shape has ${shape[1]} channels but channel_order '${channelOrder.jsonName}' " +
                "needs ${channelOrder.channels}"
        }
        require(shape[2] > 0 && shape[3] > 0) { "input.shape has an empty image: ${shape.contentToString()}" }
    }

    val channels: Int get() = shape[1].toInt()
    val height: Int get() = shape[2].toInt()
    val width: Int get() = shape[3].toInt()
    val numel: Int get() = channels * height * width
}

/**
 * model.json as written by the Python exporter (format "mnv3-mobile", version 1). Everything the
 * app needs to run any exported model comes from it: labels, input size, channels and the
 * preprocessing contract (raw pixels / 255, normalisation inside the graph).
 */
class ModelSpec(
    val dataset: String,
    val labels: List<String>,
    val input: InputSpec,
    val pteFile: String,
    val testAccuracy: Double?,
    val executorchVersion: String?
) {
    /** The name a button shows: the dataset, or for your own images the folder's name ("folder:photos" -> "photos"). */
    val displayName: String get() = dataset.removePrefix(FOLDER_PREFIX)

    /**
     * Whether this model may sit in the asset folder [folder]: a dataset's own folder (mnist/,
     * cifar10/), or custom/, which takes any model (`make android-assets CUSTOM_RUN=...`).
     */
    fun fitsAssetFolder(folder: String): Boolean = folder == CUSTOM_FOLDER || dataset == folder

    companion object {
        const val FORMAT = "mnv3-mobile"
        const val VERSION = 1
        const val FOLDER_PREFIX = "folder:"
        const val CUSTOM_FOLDER = "custom"

        /**
         * Parses and validates model.json. `test_accuracy` and `executorch_version` are optional:
         * missing or null gives null. Throws IllegalArgumentException on anything the app cannot
         * feed, org.json's JSONException on malformed JSON or a missing required field.
         */
        fun parse(json: String): ModelSpec {
            val root = JSONObject(json)
            val format = root.optString("format")
            require(format == FORMAT) { "model.json format is '$format', expected '$FORMAT'" }
            val version = root.optInt("version", -1)
            require(version == VERSION) { "model.json version is $version, expected $VERSION" }

            val input = root.getJSONObject("input")
            val dtype = input.getString("dtype")
            require(dtype == "float32") { "input.dtype is '$dtype', only float32 is supported" }
            val layout = input.getString("layout")
            require(layout == "NCHW") { "input.layout is '$layout', only NCHW is supported" }
            // The app feeds raw pixels / 255 (normalisation is inside the graph), so the
            // declared range has to be exactly [0, 1].
            val range = input.getJSONArray("value_range")
            require(range.length() == 2 && range.getDouble(0) == 0.0 && range.getDouble(1) == 1.0) {
                "input.value_range is $range, expected [0.0, 1.0]"
            }
            val shapeJson = input.getJSONArray("shape")
            val shape = LongArray(shapeJson.length()) { shapeJson.getLong(it) }
            val inputSpec = InputSpec(shape, ChannelOrder.fromJson(input.getString("channel_order")))

            val labelsJson = root.getJSONArray("labels")
            val labels = List(labelsJson.length()) { labelsJson.getString(it) }
            require(labels.isNotEmpty()) { "model.json has no labels" }

            val pte = root.getJSONObject("files").getString("pte_fp32")
            require(pte.isNotEmpty() && !pte.contains("..")) { "bad files.pte_fp32 '$pte'" }

            return ModelSpec(
                dataset = root.getString("dataset"),
                labels = labels,
                input = inputSpec,
                pteFile = pte,
                testAccuracy = optionalDouble(root, "test_accuracy"),
                executorchVersion = optionalString(root, "executorch_version")
            )
        }

        // The exporter writes `"test_accuracy": null` for a run without test.json. `has()` is true
        // for a JSON null, and Android's getString() returns the text "null" for it, so test
        // isNull(), which covers both a missing key and a null value.
        private fun optionalDouble(o: JSONObject, name: String): Double? =
            if (o.isNull(name)) null else o.getDouble(name)

        private fun optionalString(o: JSONObject, name: String): String? =
            if (o.isNull(name)) null else o.getString(name)
    }
}
