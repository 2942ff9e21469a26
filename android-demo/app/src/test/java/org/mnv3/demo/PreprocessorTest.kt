package org.mnv3.demo

import org.junit.Assert.assertArrayEquals
import org.junit.Assert.assertEquals
import org.junit.Assert.assertThrows
import org.junit.Assert.assertTrue
import org.junit.Test

class PreprocessorTest {

    private fun argb(a: Int, r: Int, g: Int, b: Int): Int = (a shl 24) or (r shl 16) or (g shl 8) or b

    private fun gray(v: Int): Int = argb(255, v, v, v)

    @Test
    fun grayImageBecomesOnePlaneOfPixelsOver255() {
        val spec = InputSpec(longArrayOf(1, 1, 2, 3), ChannelOrder.GRAY)
        // 3 wide, 2 high, row-major.
        val pixels = intArrayOf(gray(0), gray(1), gray(128), gray(254), gray(255), gray(7))
        val out = Preprocessor(spec).toInput(pixels, 3, 2)
        val expected = floatArrayOf(0f, 1f / 255f, 128f / 255f, 254f / 255f, 1f, 7f / 255f)
        assertArrayEquals(expected, out, 0f)
    }

    @Test
    fun grayIsTheBt601LumaOfAColourPixelAndIgnoresAlpha() {
        val spec = InputSpec(longArrayOf(1, 1, 1, 4), ChannelOrder.GRAY)
        // Pure red, green and blue have luma 0.299, 0.587 and 0.114 (ITU-R BT.601);
        // (100, 150, 200): 0.299 * 100 + 0.587 * 150 + 0.114 * 200 = 140.75.
        val pixels = intArrayOf(argb(255, 255, 0, 0), argb(0, 0, 255, 0), argb(128, 0, 0, 255), argb(255, 100, 150, 200))
        val out = Preprocessor(spec).toInput(pixels, 4, 1)
        assertArrayEquals(floatArrayOf(0.299f, 0.587f, 0.114f, 140.75f / 255f), out, 1e-6f)
    }

    @Test
    fun rgbImageBecomesThreePlanesInRgbOrder() {
        val spec = InputSpec(longArrayOf(1, 3, 1, 2), ChannelOrder.RGB)
        val pixels = intArrayOf(argb(255, 10, 20, 30), argb(128, 40, 50, 255))
        val out = Preprocessor(spec).toInput(pixels, 2, 1)
        val expected = floatArrayOf(
            10f / 255f, 40f / 255f, // R plane
            20f / 255f, 50f / 255f, // G plane
            30f / 255f, 1f // B plane
        )
        assertArrayEquals(expected, out, 0f)
    }

    @Test
    fun outputHasTheShapeOfModelJsonAndStaysInZeroOne() {
        for (order in ChannelOrder.values()) {
            val spec = InputSpec(longArrayOf(1, order.channels.toLong(), 16, 16), order)
            // Every byte value in the red plane, spread values in the others; black first and
            // white last, so that every plane, the gray (luma) one too, reaches 0 and 1.
            val pixels = IntArray(256) { argb(255, it, 255 - it, (it * 7) and 0xFF) }
            pixels[0] = gray(0)
            pixels[255] = gray(255)
            val out = Preprocessor(spec).toInput(pixels, 16, 16)
            assertEquals(order.channels * 256, out.size)
            for (v in out) assertTrue("value $v outside [0, 1]", v >= 0f && v <= 1f)
            assertEquals(0f, out.minOrZero(), 0f)
            assertEquals(1f, out.maxOrZero(), 0f)
        }
    }

    @Test
    fun mnistAndCifarShapes() {
        val mnist = InputSpec(longArrayOf(1, 1, 28, 28), ChannelOrder.GRAY)
        assertEquals(28 * 28, Preprocessor(mnist).toInput(IntArray(28 * 28) { gray(it % 256) }, 28, 28).size)
        val cifar = InputSpec(longArrayOf(1, 3, 32, 32), ChannelOrder.RGB)
        assertEquals(3 * 32 * 32, Preprocessor(cifar).toInput(IntArray(32 * 32), 32, 32).size)
    }

    @Test
    fun wrongImageSizeIsRejected() {
        val pre = Preprocessor(InputSpec(longArrayOf(1, 1, 28, 28), ChannelOrder.GRAY))
        val e = assertThrows(IllegalArgumentException::class.java) {
            pre.toInput(IntArray(32 * 32), 32, 32)
        }
        assertTrue(e.message!!, e.message!!.contains("32x32"))
        // Transposed width/height is a mismatch too.
        val rect = Preprocessor(InputSpec(longArrayOf(1, 3, 2, 4), ChannelOrder.RGB))
        assertThrows(IllegalArgumentException::class.java) { rect.toInput(IntArray(8), 2, 4) }
    }

    @Test
    fun wrongPixelCountIsRejected() {
        val pre = Preprocessor(InputSpec(longArrayOf(1, 1, 28, 28), ChannelOrder.GRAY))
        assertThrows(IllegalArgumentException::class.java) { pre.toInput(IntArray(28 * 27), 28, 28) }
    }

    @Test
    fun shapeMustMatchChannelOrder() {
        assertThrows(IllegalArgumentException::class.java) { InputSpec(longArrayOf(1, 3, 28, 28), ChannelOrder.GRAY) }
        assertThrows(IllegalArgumentException::class.java) { InputSpec(longArrayOf(1, 1, 32, 32), ChannelOrder.RGB) }
        assertThrows(IllegalArgumentException::class.java) { InputSpec(longArrayOf(2, 1, 28, 28), ChannelOrder.GRAY) }
        assertThrows(IllegalArgumentException::class.java) { InputSpec(longArrayOf(1, 28, 28), ChannelOrder.GRAY) }
    }

    private fun FloatArray.minOrZero(): Float = if (isEmpty()) 0f else reduce { a, b -> if (b < a) b else a }

    private fun FloatArray.maxOrZero(): Float = if (isEmpty()) 0f else reduce { a, b -> if (b > a) b else a }
}
