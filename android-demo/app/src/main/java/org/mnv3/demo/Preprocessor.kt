package org.mnv3.demo

/**
 * Turns decoded image pixels into the model's input tensor data, exactly as model.json says:
 * NCHW float32, raw pixel / 255 (no mean/std here: normalisation is inside the exported graph).
 *
 * Pure Kotlin (no Android classes), so it runs in the JVM unit tests.
 * Pixels are packed ARGB ints, row-major, as returned by `Bitmap.getPixels`.
 */
class Preprocessor(private val spec: InputSpec) {

    fun toInput(argb: IntArray, width: Int, height: Int): FloatArray {
        require(width == spec.width && height == spec.height) {
            "image is ${width}x$height (WxH) but model.json input.shape " +
                "${spec.shape.contentToString()} needs ${spec.width}x${spec.height}"
        }
        val plane = width * height
        require(argb.size == plane) { "got ${argb.size} pixels for a ${width}x$height image" }

        val out = FloatArray(spec.numel)
        when (spec.channelOrder) {
            // The PNGs are 8-bit greyscale; Android decodes them as ARGB with R = G = B.
            ChannelOrder.GRAY -> for (i in 0 until plane) {
                out[i] = red(argb[i]) / 255f
            }
            ChannelOrder.RGB -> for (i in 0 until plane) {
                val p = argb[i]
                out[i] = red(p) / 255f
                out[plane + i] = green(p) / 255f
                out[2 * plane + i] = blue(p) / 255f
            }
        }
        return out
    }

    private companion object {
        fun red(p: Int) = (p ushr 16) and 0xFF
        fun green(p: Int) = (p ushr 8) and 0xFF
        fun blue(p: Int) = p and 0xFF
    }
}
