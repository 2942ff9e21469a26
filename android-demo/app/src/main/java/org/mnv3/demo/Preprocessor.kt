package org.mnv3.demo

/**
 * Turns decoded image pixels into the model's input tensor data, exactly as model.json says:
 * NCHW float32, raw pixel / 255 (no mean/std here: normalisation is inside the exported graph).
 *
 * Pure Kotlin (no Android classes), so it runs in the JVM unit tests.
 * Pixels are packed ARGB ints, row-major, as returned by `Bitmap.getPixels`; alpha is ignored.
 * "gray" input is the ITU-R BT.601 luma of each pixel / 255, so a colour picture is converted
 * properly; "RGB" input is three planes R, G, B, each byte / 255.
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
            ChannelOrder.GRAY -> for (i in 0 until plane) {
                val p = argb[i]
                out[i] = (LUMA_R * red(p) + LUMA_G * green(p) + LUMA_B * blue(p)) / LUMA_SCALE
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
        // ITU-R BT.601 luma, Y = 0.299 R + 0.587 G + 0.114 B, in thousandths (as PIL's
        // convert("L") writes it). Integer weights summing to exactly 1000 keep a grey pixel
        // (R = G = B = v, as Android decodes the bundled greyscale PNGs) at exactly v / 255f.
        const val LUMA_R = 299
        const val LUMA_G = 587
        const val LUMA_B = 114
        const val LUMA_SCALE = 1000f * 255f

        fun red(p: Int) = (p ushr 16) and 0xFF
        fun green(p: Int) = (p ushr 8) and 0xFF
        fun blue(p: Int) = p and 0xFF
    }
}
