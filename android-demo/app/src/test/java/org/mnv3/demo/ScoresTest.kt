package org.mnv3.demo

import org.junit.Assert.assertArrayEquals
import org.junit.Assert.assertEquals
import org.junit.Assert.assertTrue
import org.junit.Test

class ScoresTest {

    @Test
    fun softmaxSumsToOneAndKeepsOrder() {
        val p = Scores.softmax(floatArrayOf(1f, 2f, 3f))
        var sum = 0.0
        for (v in p) sum += v
        assertEquals(1.0, sum, 1e-6)
        assertTrue(p[0] < p[1] && p[1] < p[2])
        assertEquals(0.6652409f, p[2], 1e-6f)
    }

    @Test
    fun softmaxIsStableForLargeLogits() {
        val p = Scores.softmax(floatArrayOf(1000f, 1000f, -1000f))
        assertArrayEquals(floatArrayOf(0.5f, 0.5f, 0f), p, 1e-6f)
    }

    @Test
    fun argmaxTakesTheFirstMaximum() {
        assertEquals(2, Scores.argmax(floatArrayOf(-1f, 0f, 5f, 5f)))
        assertEquals(0, Scores.argmax(floatArrayOf(3f)))
    }

    @Test
    fun predictPicksLabelAndConfidence() {
        val p = Scores.predict(floatArrayOf(0f, 4f, 1f), listOf("cat", "dog", "ship"))
        assertEquals(1, p.index)
        assertEquals("dog", p.label)
        assertEquals(Scores.softmax(floatArrayOf(0f, 4f, 1f))[1], p.confidence, 0f)
    }

    @Test
    fun goldenJsonParses() {
        val golden = Golden.parse(
            """{"dataset": "mnist", "images": [
                {"file": "images/00.png", "label": 7, "expected_index": 7, "expected_logits": [0.5, -1.25, 3]}]}"""
        )
        assertEquals("mnist", golden.dataset)
        val img = golden.find("images/00.png")!!
        assertEquals(7, img.label)
        assertEquals(7, img.expectedIndex)
        assertArrayEquals(doubleArrayOf(0.5, -1.25, 3.0), img.expectedLogits, 0.0)
    }
}
