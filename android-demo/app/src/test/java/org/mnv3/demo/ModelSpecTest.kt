package org.mnv3.demo

import org.junit.Assert.assertArrayEquals
import org.junit.Assert.assertEquals
import org.junit.Assert.assertFalse
import org.junit.Assert.assertNull
import org.junit.Assert.assertThrows
import org.junit.Assert.assertTrue
import org.junit.Test

class ModelSpecTest {

    private fun modelJson(
        dataset: String = "mnist",
        shape: String = "[1, 1, 28, 28]",
        channelOrder: String = "gray",
        valueRange: String = "[0.0, 1.0]",
        format: String = "mnv3-mobile",
        extra: String = ", \"test_accuracy\": 0.991, \"executorch_version\": \"1.5.1\""
    ): String = """
        {"format": "$format", "version": 1, "dataset": "$dataset",
         "labels": ["0","1","2","3","4","5","6","7","8","9"],
         "input": {"shape": $shape, "dtype": "float32", "layout": "NCHW",
                   "channel_order": "$channelOrder", "value_range": $valueRange,
                   "normalization": "inside the model graph; feed raw pixels/255"},
         "files": {"pte_fp32": "model.pte"}$extra}
    """.trimIndent()

    @Test
    fun parsesMnistSpec() {
        val spec = ModelSpec.parse(modelJson())
        assertEquals("mnist", spec.dataset)
        assertEquals(10, spec.labels.size)
        assertEquals("7", spec.labels[7])
        assertArrayEquals(longArrayOf(1, 1, 28, 28), spec.input.shape)
        assertEquals(ChannelOrder.GRAY, spec.input.channelOrder)
        assertEquals(28, spec.input.width)
        assertEquals(28, spec.input.height)
        assertEquals("model.pte", spec.pteFile)
        assertEquals(0.991, spec.testAccuracy!!, 0.0)
        assertEquals("1.5.1", spec.executorchVersion)
    }

    @Test
    fun parsesCifarSpec() {
        val spec = ModelSpec.parse(modelJson("cifar10", "[1, 3, 32, 32]", "RGB"))
        assertEquals(ChannelOrder.RGB, spec.input.channelOrder)
        assertEquals(3 * 32 * 32, spec.input.numel)
    }

    @Test
    fun optionalFieldsMayBeMissing() {
        val spec = ModelSpec.parse(modelJson(extra = ""))
        assertNull(spec.testAccuracy)
        assertNull(spec.executorchVersion)
    }

    @Test
    fun nullOptionalFieldsAreNull() {
        // What the exporter writes for a run without test.json.
        val spec = ModelSpec.parse(modelJson(extra = ", \"test_accuracy\": null, \"executorch_version\": null"))
        assertNull(spec.testAccuracy)
        assertNull(spec.executorchVersion)
        assertEquals("mnist", spec.dataset)
    }

    @Test
    fun readsLabelsSizeAndChannelsOfAnImageFolderModel() {
        // What `python -m mnv3.export` writes for a run of --dataset folder:photos --image-size 64.
        val json = """
            {"format": "mnv3-mobile", "version": 1, "dataset": "folder:photos",
             "labels": ["cat", "dog", "frog"],
             "input": {"shape": [1, 3, 64, 48], "dtype": "float32", "layout": "NCHW",
                       "channel_order": "RGB", "value_range": [0.0, 1.0],
                       "normalization": "inside the model graph; feed raw pixels/255"},
             "files": {"pte_fp32": "model.pte"}, "test_accuracy": 0.9, "executorch_version": "1.5.1"}
        """.trimIndent()
        val spec = ModelSpec.parse(json)
        assertEquals(listOf("cat", "dog", "frog"), spec.labels)
        assertEquals(3, spec.input.channels)
        assertEquals(64, spec.input.height)
        assertEquals(48, spec.input.width)
        assertEquals(ChannelOrder.RGB, spec.input.channelOrder)
        assertEquals("photos", spec.displayName)
        assertTrue(spec.fitsAssetFolder("custom"))
        assertFalse(spec.fitsAssetFolder("mnist"))
        // A gray one: one plane of 1 x 28 x 28, and the report's models keep their own folders.
        val gray = ModelSpec.parse(json.replace("[1, 3, 64, 48]", "[1, 1, 28, 28]").replace("\"RGB\"", "\"gray\""))
        assertEquals(1, gray.input.channels)
        assertEquals(28 * 28, gray.input.numel)
        assertEquals(28 * 28, Preprocessor(gray.input).toInput(IntArray(28 * 28), 28, 28).size)
        val mnist = ModelSpec.parse(modelJson())
        assertTrue(mnist.fitsAssetFolder("mnist"))
        assertFalse(mnist.fitsAssetFolder("cifar10"))
        assertEquals("mnist", mnist.displayName)
    }

    @Test
    fun rejectsWhatTheAppCannotFeed() {
        assertThrows(IllegalArgumentException::class.java) { ModelSpec.parse(modelJson(format = "other")) }
        assertThrows(IllegalArgumentException::class.java) { ModelSpec.parse(modelJson(channelOrder = "BGR")) }
        assertThrows(IllegalArgumentException::class.java) { ModelSpec.parse(modelJson(valueRange = "[-1.0, 1.0]")) }
        assertThrows(IllegalArgumentException::class.java) {
            ModelSpec.parse(modelJson(shape = "[1, 3, 28, 28]", channelOrder = "gray"))
        }
    }
}
