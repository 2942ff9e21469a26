package org.mnv3.demo

import android.content.Context
import android.graphics.Bitmap
import android.graphics.BitmapFactory
import java.io.File
import java.io.FileOutputStream
import java.io.IOException

/** Reads the files that `make android-assets` puts under app/src/main/assets/<dataset>/. */
object Assets {

    fun readText(context: Context, path: String): String =
        context.assets.open(path).use { it.readBytes().toString(Charsets.UTF_8) }

    /** Asset paths of the sample images, e.g. "mnist/images/03.png", sorted. */
    fun listImages(context: Context, dataset: String): List<String> {
        val names = context.assets.list("$dataset/images") ?: emptyArray()
        return names.filter { it.endsWith(".png") }.sorted().map { "$dataset/images/$it" }
    }

    /** Decodes a PNG at its own size (no density scaling) into ARGB_8888. */
    fun decodePng(context: Context, path: String): Bitmap {
        val options = BitmapFactory.Options().apply {
            inScaled = false
            inPreferredConfig = Bitmap.Config.ARGB_8888
        }
        return context.assets.open(path).use { BitmapFactory.decodeStream(it, null, options) }
            ?: throw IOException("cannot decode image asset $path")
    }

    /** Packed ARGB pixels, row-major, as Preprocessor expects. */
    fun pixels(bitmap: Bitmap): IntArray {
        val out = IntArray(bitmap.width * bitmap.height)
        bitmap.getPixels(out, 0, bitmap.width, 0, 0, bitmap.width, bitmap.height)
        return out
    }

    /**
     * ExecuTorch loads a model from a file path, not from an asset stream, so the .pte is copied
     * to filesDir/<assetPath>. The copy is refreshed every time (callers cache the loaded Module,
     * so this happens once per dataset per process) so a reinstalled APK never runs a stale model.
     */
    fun copyToFiles(context: Context, assetPath: String): File {
        val dest = File(context.filesDir, assetPath)
        dest.parentFile?.mkdirs()
        val tmp = File(dest.path + ".tmp")
        context.assets.open(assetPath).use { input ->
            FileOutputStream(tmp).use { output -> input.copyTo(output) }
        }
        if (!tmp.renameTo(dest)) throw IOException("cannot move $tmp to $dest")
        return dest
    }
}
