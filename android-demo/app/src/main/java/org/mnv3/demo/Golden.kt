package org.mnv3.demo

import org.json.JSONObject

/** One entry of golden.json: the logits the Python ExecuTorch runtime produced for an image. */
class GoldenImage(
    /** Path relative to the dataset's asset folder, e.g. "images/00.png". */
    val file: String,
    val label: Int,
    val expectedIndex: Int,
    val expectedLogits: DoubleArray
)

/** golden.json as written by the Python exporter. */
class Golden(val dataset: String, val images: List<GoldenImage>) {

    fun find(file: String): GoldenImage? = images.firstOrNull { it.file == file }

    companion object {
        fun parse(json: String): Golden {
            val root = JSONObject(json)
            val list = root.getJSONArray("images")
            val images = List(list.length()) { i ->
                val o = list.getJSONObject(i)
                val logits = o.getJSONArray("expected_logits")
                GoldenImage(
                    file = o.getString("file"),
                    label = o.getInt("label"),
                    expectedIndex = o.getInt("expected_index"),
                    expectedLogits = DoubleArray(logits.length()) { logits.getDouble(it) }
                )
            }
            return Golden(root.getString("dataset"), images)
        }
    }
}
