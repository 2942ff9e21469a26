package org.mnv3.demo

import kotlin.math.exp

/** The model's answer for one image. */
class Prediction(val index: Int, val label: String, val confidence: Float, val logits: FloatArray)

/** Softmax and argmax over the model's logits (pure Kotlin, unit-tested on the JVM). */
object Scores {
    fun softmax(logits: FloatArray): FloatArray {
        require(logits.isNotEmpty()) { "no logits" }
        var max = logits[0]
        for (v in logits) if (v > max) max = v
        val exps = DoubleArray(logits.size) { exp((logits[it] - max).toDouble()) }
        val sum = exps.sum()
        return FloatArray(logits.size) { (exps[it] / sum).toFloat() }
    }

    /** Index of the largest value (the first one on ties). */
    fun argmax(values: FloatArray): Int {
        require(values.isNotEmpty()) { "no values" }
        var best = 0
        for (i in 1 until values.size) if (values[i] > values[best]) best = i
        return best
    }

    fun predict(logits: FloatArray, labels: List<String>): Prediction {
        require(logits.size == labels.size) {
            "model returned ${logits.size} logits but model.json has ${labels.size} labels"
        }
        val probs = softmax(logits)
        val best = argmax(logits)
        return Prediction(best, labels[best], probs[best], logits)
    }
}
