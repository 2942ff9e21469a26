import org.jetbrains.kotlin.gradle.dsl.JvmTarget

plugins {
    id("com.android.application")
    id("org.jetbrains.kotlin.android")
}

android {
    namespace = "org.mnv3.demo"
    compileSdk = 35

    defaultConfig {
        applicationId = "org.mnv3.demo"
        minSdk = 24 // executorch-android declares minSdk 23
        targetSdk = 35
        versionCode = 1
        versionName = "1.0"
        testInstrumentationRunner = "androidx.test.runner.AndroidJUnitRunner"
        // The executorch-android AAR ships native code for these two ABIs only
        // (arm64-v8a: phones, x86_64: the usual emulator image).
        ndk {
            abiFilters += listOf("arm64-v8a", "x86_64")
        }
    }

    buildTypes {
        release {
            isMinifyEnabled = false
        }
    }

    compileOptions {
        sourceCompatibility = JavaVersion.VERSION_17
        targetCompatibility = JavaVersion.VERSION_17
    }
}

kotlin {
    compilerOptions {
        jvmTarget.set(JvmTarget.JVM_17)
    }
}

dependencies {
    // Must match the Python package that wrote the .pte files: executorch==1.5.1.
    // From Maven Central this pulls fbjni and soloader (nativeloader) transitively;
    // only a hand-downloaded executorch.aar would need them declared here.
    implementation("org.pytorch:executorch-android:1.5.1")

    testImplementation("junit:junit:4.13.2")
    // Real org.json for JVM unit tests (android.jar only has stubs that throw).
    testImplementation("org.json:json:20250107")

    androidTestImplementation("androidx.test.ext:junit:1.2.1")
    androidTestImplementation("androidx.test:runner:1.6.2")
}
