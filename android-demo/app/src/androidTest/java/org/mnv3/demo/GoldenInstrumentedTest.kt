package org.mnv3.demo

import androidx.test.ext.junit.runners.AndroidJUnit4
import androidx.test.platform.app.InstrumentationRegistry
import kotlin.math.abs
import org.junit.Assume.assumeTrue
import org.junit.Assert.assertEquals
import org.junit.Assert.assertTrue
import org.junit.Test
import org.junit.runner.RunWith

/**
 * Runs the real app path on a device or emulator: model.json + model.pte + PNG assets ->
 * BitmapFactory -> Preprocessor -> ExecuTorch Module -> logits, and compares with golden.json,
 * which the Python side wrote with the ExecuTorch Python runtime on the same .pte and PNGs.
 */
@RunWith(AndroidJUnit4::class)
class GoldenInstrumentedTest {

    // The assets are packaged in the app under test, not in the test APK.
    private val context = InstrumentationRegistry.getInstrumentation().targetContext

    @Test
    fun mnistMatchesGolden() = checkDataset("mnist")

    @Test
    fun cifar10MatchesGolden() = checkDataset("cifar10")

    /** The optional third model (your own images, `make android-assets CUSTOM_RUN=...`). */
    @Test
    fun customMatchesGolden() {
        assumeTrue("no custom model bundled", context.assets.list("custom")?.contains("model.json") == true)
        checkDataset("custom")
    }

    private fun checkDataset(dataset: String) {
        val golden = Golden.parse(Assets.readText(context, "$dataset/golden.json"))
        if (dataset != "custom") assertEquals("golden.json dataset", dataset, golden.dataset)
        assertTrue("$dataset/golden.json lists no images", golden.images.isNotEmpty())

        Classifier.load(context, dataset).use { classifier ->
            for (image in golden.images) {
                val bitmap = Assets.decodePng(context, "$dataset/${image.file}")
                val logits = classifier.logits(bitmap)
                assertEquals("$dataset ${image.file}: number of logits", image.expectedLogits.size, logits.size)
                assertEquals("$dataset ${image.file}: number of logits vs labels", classifier.spec.labels.size, logits.size)

                var maxDiff = 0.0
                for (i in logits.indices) {
                    maxDiff = maxOf(maxDiff, abs(logits[i].toDouble() - image.expectedLogits[i]))
                }
                assertTrue(
                    "$dataset ${image.file}: max |logit - expected| = $maxDiff > $TOLERANCE",
                    maxDiff <= TOLERANCE
                )
                assertEquals("$dataset ${image.file}: predicted index", image.expectedIndex, Scores.argmax(logits))
            }
        }
    }

    private companion object {
        const val TOLERANCE = 1e-3
    }
}
