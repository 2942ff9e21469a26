package org.mnv3.demo

import android.content.Context
import android.graphics.Bitmap
import java.io.Closeable
import org.pytorch.executorch.EValue
import org.pytorch.executorch.Module
import org.pytorch.executorch.Tensor

/** One exported MobileNetV3 (.pte) plus its model.json, run through the ExecuTorch runtime. */
class Classifier(val spec: ModelSpec, private val module: Module) : Closeable {

    private val preprocessor = Preprocessor(spec.input)

    /** Raw model output for one input tensor (length = number of labels). */
    fun logits(input: FloatArray): FloatArray {
        require(input.size == spec.input.numel) {
            "input has ${input.size} values, model.json input.shape needs ${spec.input.numel}"
        }
        val tensor = Tensor.fromBlob(input, spec.input.shape)
        val outputs = module.forward(EValue.from(tensor))
        check(outputs.isNotEmpty()) { "model returned no outputs" }
        return outputs[0].toTensor().dataAsFloatArray
    }

    fun logits(bitmap: Bitmap): FloatArray =
        logits(preprocessor.toInput(Assets.pixels(bitmap), bitmap.width, bitmap.height))

    fun classify(bitmap: Bitmap): Prediction = Scores.predict(logits(bitmap), spec.labels)

    override fun close() = module.destroy()

    companion object {
        /** Loads <dataset>/model.json and the .pte it names from the APK's assets (custom/: any model). */
        fun load(context: Context, dataset: String): Classifier {
            val spec = ModelSpec.parse(Assets.readText(context, "$dataset/model.json"))
            require(spec.fitsAssetFolder(dataset)) { "$dataset/model.json says dataset '${spec.dataset}'" }
            val pte = Assets.copyToFiles(context, "$dataset/${spec.pteFile}")
            return Classifier(spec, Module.load(pte.absolutePath))
        }
    }
}

/** Loaded classifiers, one per dataset, kept for the life of the process. */
object Classifiers {
    private val loaded = HashMap<String, Classifier>()

    @Synchronized
    fun get(context: Context, dataset: String): Classifier =
        loaded.getOrPut(dataset) { Classifier.load(context.applicationContext, dataset) }
}
