package org.mnv3.demo

import android.app.Activity
import android.graphics.Bitmap
import android.graphics.drawable.BitmapDrawable
import android.os.Bundle
import android.util.Log
import android.view.View
import android.widget.Button
import android.widget.ImageView
import android.widget.TextView
import java.util.Locale
import java.util.concurrent.ExecutorService
import java.util.concurrent.Executors

/**
 * One screen: the image, a grey box with the prediction, and one button per dataset.
 * Each button picks a random sample image of that dataset and classifies it on the device.
 * MNIST and CIFAR10 are the report's two models; a third button appears when assets/custom/
 * holds a model (your own images), labelled with its model.json's dataset.
 *
 * A plain platform [Activity] (no AndroidX AppCompat): two buttons need nothing more, and the app
 * then compiles against android.jar alone (`make android-check`). API 23's `findViewById` is not
 * generic, hence the casts.
 */
class MainActivity : Activity() {

    private lateinit var imageView: ImageView
    private lateinit var predictionView: TextView
    private lateinit var buttons: List<Button>

    /** Model loading and inference run here, off the UI thread. */
    private val worker: ExecutorService = Executors.newSingleThreadExecutor()

    private class Shown(val bitmap: Bitmap, val file: String, val prediction: Prediction, val trueLabel: String?)

    override fun onCreate(savedInstanceState: Bundle?) {
        super.onCreate(savedInstanceState)
        setContentView(R.layout.activity_main)
        imageView = findViewById(R.id.image) as ImageView
        predictionView = findViewById(R.id.prediction) as TextView
        val mnist = findViewById(R.id.button_mnist) as Button
        val cifar = findViewById(R.id.button_cifar10) as Button
        val custom = findViewById(R.id.button_custom) as Button
        buttons = listOf(mnist, cifar, custom)
        mnist.setOnClickListener { showRandom(DATASET_MNIST) }
        cifar.setOnClickListener { showRandom(DATASET_CIFAR10) }
        custom.setOnClickListener { showRandom(ModelSpec.CUSTOM_FOLDER) }
        // The third button shows only when a custom model is bundled; model.json names it.
        worker.execute {
            val spec = runCatching { ModelSpec.parse(Assets.readText(this, "${ModelSpec.CUSTOM_FOLDER}/model.json")) }.getOrNull()
            if (spec != null) {
                runOnUiThread {
                    custom.text = spec.displayName
                    custom.visibility = View.VISIBLE
                }
            }
        }
    }

    override fun onDestroy() {
        worker.shutdown()
        super.onDestroy()
    }

    private fun showRandom(dataset: String) {
        buttons.forEach { it.isEnabled = false }
        predictionView.text = getString(R.string.running, dataset)
        worker.execute {
            val outcome = runCatching { classifyRandomImage(dataset) }
            outcome.exceptionOrNull()?.let { Log.e(TAG, "classifying a $dataset image failed", it) }
            runOnUiThread {
                if (isFinishing || isDestroyed) return@runOnUiThread
                buttons.forEach { it.isEnabled = true }
                outcome.fold(onSuccess = { show(it) }, onFailure = { showError(dataset, it) })
            }
        }
    }

    /** Runs on the worker thread. */
    private fun classifyRandomImage(dataset: String): Shown {
        val classifier = Classifiers.get(this, dataset)
        val images = Assets.listImages(this, dataset)
        check(images.isNotEmpty()) { "no PNGs in assets/$dataset/images" }
        val path = images.random()
        val bitmap = Assets.decodePng(this, path)
        val prediction = classifier.classify(bitmap)
        return Shown(bitmap, path, prediction, trueLabel(dataset, path, classifier.spec))
    }

    /** The ground-truth label from golden.json, if the image is listed there. */
    private fun trueLabel(dataset: String, path: String, spec: ModelSpec): String? = try {
        val golden = Golden.parse(Assets.readText(this, "$dataset/golden.json"))
        golden.find(path.removePrefix("$dataset/"))?.let { spec.labels.getOrNull(it.label) }
    } catch (e: Exception) {
        null
    }

    private fun show(shown: Shown) {
        // Nearest-neighbour upscaling keeps the 28x28 / 32x32 pixels sharp.
        val drawable = BitmapDrawable(resources, shown.bitmap)
        drawable.setFilterBitmap(false)
        imageView.setImageDrawable(drawable)

        val p = shown.prediction
        val confidence = String.format(Locale.US, "%.1f", p.confidence * 100f)
        val text = StringBuilder(getString(R.string.prediction, p.label, confidence))
        text.append('\n').append(shown.file.substringAfterLast('/'))
        if (shown.trueLabel != null) text.append("  ·  ").append(getString(R.string.true_label, shown.trueLabel))
        predictionView.text = text
    }

    private fun showError(dataset: String, error: Throwable) {
        imageView.setImageDrawable(null)
        predictionView.text = getString(R.string.error, dataset, error.message ?: error.toString())
    }

    companion object {
        private const val TAG = "mnv3-demo"
        const val DATASET_MNIST = "mnist"
        const val DATASET_CIFAR10 = "cifar10"
    }
}
