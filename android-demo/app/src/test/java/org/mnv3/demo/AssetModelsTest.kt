package org.mnv3.demo

import java.io.File
import java.io.RandomAccessFile
import org.junit.Assert.assertEquals
import org.junit.Assert.assertTrue
import org.junit.Assume.assumeTrue
import org.junit.Test

/**
 * The models really bundled in the app's assets (what `make android-assets` wrote, the optional
 * custom/ model included), read by the app's own ModelSpec: each model.json parses, fits its
 * folder, has one label per logit of golden.json, and every image's PNG header has the width,
 * height and colour type (gray or RGB) that the model's input takes. `make android-check` passes
 * the assets folder as the system property mnv3.assets; without generated assets there is
 * nothing to check and the test is skipped (tests/test_android.py generates a custom model).
 */
class AssetModelsTest {

    /** (width, height, PNG colour type) from a PNG's IHDR chunk: 0 gray, 2 RGB, 4 gray+alpha, 6 RGBA. */
    private fun pngHeader(file: File): Triple<Int, Int, Int> = RandomAccessFile(file, "r").use { f ->
        val head = ByteArray(26)
        f.readFully(head)
        val signature = byteArrayOf(0x89.toByte(), 'P'.code.toByte(), 'N'.code.toByte(), 'G'.code.toByte())
        assertTrue("$file is not a PNG", head.copyOfRange(0, 4).contentEquals(signature))
        fun int(at: Int) = ((head[at].toInt() and 0xFF) shl 24) or ((head[at + 1].toInt() and 0xFF) shl 16) or
            ((head[at + 2].toInt() and 0xFF) shl 8) or (head[at + 3].toInt() and 0xFF)
        Triple(int(16), int(20), head[25].toInt() and 0xFF)
    }

    @Test
    fun bundledModelsFitTheirImagesAndGolden() {
        val root = System.getProperty("mnv3.assets")?.let { File(it) }
        val folders = root?.listFiles()?.filter { File(it, "model.json").isFile }?.sortedBy { it.name } ?: emptyList()
        assumeTrue("no generated models under ${root ?: "(mnv3.assets not set)"}", folders.isNotEmpty())
        for (folder in folders) {
            val spec = ModelSpec.parse(File(folder, "model.json").readText())
            assertTrue("${folder.name}/model.json names dataset ${spec.dataset}", spec.fitsAssetFolder(folder.name))
            assertTrue("${folder.name}: ${spec.pteFile} is missing", File(folder, spec.pteFile).isFile)
            val golden = Golden.parse(File(folder, "golden.json").readText())
            assertTrue("${folder.name}/golden.json lists no images", golden.images.isNotEmpty())
            for (image in golden.images) {
                assertEquals("${folder.name}/${image.file}: logits vs labels", spec.labels.size, image.expectedLogits.size)
                assertTrue("${folder.name}/${image.file}: label ${image.label}", image.label in spec.labels.indices)
                val (width, height, colour) = pngHeader(File(folder, image.file))
                assertEquals("${folder.name}/${image.file}: width", spec.input.width, width)
                assertEquals("${folder.name}/${image.file}: height", spec.input.height, height)
                val expected = if (spec.input.channelOrder == ChannelOrder.GRAY) 0 else 2
                assertEquals("${folder.name}/${image.file}: PNG colour type", expected, colour)
            }
            val shape = spec.input.shape.joinToString("x")
            println("AssetModelsTest: ${folder.name} (${spec.displayName}): ${spec.labels.size} labels, input $shape " +
                "${spec.input.channelOrder.jsonName}, ${golden.images.size} images")
        }
    }
}
