// Top-level build file. Versions are pinned here; the app module applies the plugins.
// AGP 8.7.x needs Gradle >= 8.9 and JDK 17; Kotlin 2.2.x supports AGP up to 8.10.
plugins {
    id("com.android.application") version "8.7.3" apply false
    id("org.jetbrains.kotlin.android") version "2.2.21" apply false
}
