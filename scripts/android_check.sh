#!/usr/bin/env bash
# `make android-check`: compile the Android demo app against a real android.jar and the ExecuTorch
# Java API, then run its JVM unit tests. Our machines have no Android SDK and cannot reach Google's
# Maven, so the tools come from registries we do reach (see android-demo/README.md, "Compile check").
set -euo pipefail

usage() {
    cat <<'EOF'
Usage: scripts/android_check.sh [--app DIR]

Compiles every Kotlin source of the Android demo app, main and unit tests, with kotlinc 2.2.21
against android.jar (API 23) and the ExecuTorch Java API, then runs the JVM unit tests (every
src/test/.../*Test.kt) with JUnit 4. Resources are linked against the same android.jar by aapt,
which writes the R class MainActivity uses. The instrumented tests (src/androidTest) need AndroidX
Test and a device, and are not compiled. The unit tests see the app's generated assets
(src/main/assets, from `make android-assets`, a custom model included) through the system
property mnv3.assets: AssetModelsTest checks each bundled model.json against its images and golden.json.

  --app DIR   the app module to check (holding build.gradle.kts and src/); default android-demo/app

What it fetches goes to $ANDROID_CHECK_CACHE (default .cache/android-check/ in the repository,
ignored by git), once:
  Debian 11 (bullseye), through a private apt configuration in that folder (the machine's own apt
    lists and sources are not read or changed): libandroid-23-java (android.jar API 23, the jar of
    android-sdk-platform-23), junit4, libhamcrest-java, libandroid-json-java (Android's own org.json,
    for the unit tests) and aapt with its libraries. Mirror: $ANDROID_CHECK_DEBIAN_URL
    (default http://deb.debian.org/debian).
  npm: kotlin-compiler 2.2.21 and react-native-executorch 0.9.3 (only android/libs/classes.jar,
    the org.pytorch.executorch classes).

Needs bash, java and javac 17, npm, apt-get and dpkg-deb (Debian). No root.
Exit status: 0 compiled and every test passed; 1 a resource, compile or test error;
2 bad usage; 75 a registry could not be reached (one line on stderr saying which).
EOF
}

KOTLIN_VERSION=2.2.21
EXECUTORCH_NPM_VERSION=0.9.3
DEBIAN_SUITE=bullseye
DEBIAN_URL=${ANDROID_CHECK_DEBIAN_URL:-http://deb.debian.org/debian}
# aapt and the shared libraries it loads, from the same release as android.jar's package.
DEB_PACKAGES=(
    libandroid-23-java junit4 libhamcrest-java libandroid-json-java
    aapt android-libaapt android-libandroidfw android-libbacktrace android-libbase
    android-libcutils android-liblog android-libunwind android-libutils android-libziparchive
    libprotobuf-lite23 libpng16-16 libexpat1 libbsd0 libmd0 p7zip-full
)
EX_UNAVAILABLE=75

REPO=$(cd "$(dirname "$0")/.." && pwd)
APP=$REPO/android-demo/app
while [ $# -gt 0 ]; do
    case $1 in
        --app) [ $# -ge 2 ] || { echo "android_check.sh: --app needs a folder, e.g. --app android-demo/app" >&2; exit 2; }
               APP=$(cd "$2" 2>/dev/null && pwd) || { echo "android_check.sh: --app $2: no such folder" >&2; exit 2; }
               shift 2 ;;
        -h|--help) usage; exit 0 ;;
        *) echo "android_check.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
    esac
done
[ -f "$APP/build.gradle.kts" ] && [ -d "$APP/src/main" ] || {
    echo "android_check.sh: $APP is not an app module (no build.gradle.kts or src/main); pass --app DIR" >&2; exit 2; }
for tool in java javac npm apt-get dpkg-deb; do
    command -v "$tool" >/dev/null || { echo "android_check.sh: '$tool' not found; install it (Debian: JDK 17, npm, apt)" >&2; exit 2; }
done

CACHE=${ANDROID_CHECK_CACHE:-$REPO/.cache/android-check}
mkdir -p "$CACHE"
CACHE=$(cd "$CACHE" && pwd)

unavailable() { echo "android-check skipped: $*" >&2; exit "$EX_UNAVAILABLE"; }

# ---------------------------------------------------------------- fetch (cached)

# Debian packages, extracted (not installed) into $DEB_ROOT.
DEB_DIR=$CACHE/debian-$DEBIAN_SUITE
DEB_ROOT=$DEB_DIR/root
fetch_debian() {
    local stamp="$DEB_DIR/fetched"
    [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$DEBIAN_URL ${DEB_PACKAGES[*]}" ] && return
    rm -rf "$DEB_DIR"
    local apt=$DEB_DIR/apt
    mkdir -p "$apt/sources.list.d" "$apt/preferences.d" "$apt/lists/partial" "$apt/cache/archives/partial" "$DEB_DIR/debs"
    : >"$apt/status"
    echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $DEBIAN_URL $DEBIAN_SUITE main" >"$apt/sources.list"
    local opts=(
        -o "Dir::Etc::SourceList=$apt/sources.list" -o "Dir::Etc::SourceParts=$apt/sources.list.d"
        -o "Dir::Etc::PreferencesParts=$apt/preferences.d" -o "Dir::State::Lists=$apt/lists"
        -o "Dir::State::status=$apt/status" -o "Dir::Cache=$apt/cache"
        -o "APT::Sandbox::User=$(id -un)" -o "Debug::NoLocking=1"
    )
    echo "android-check: fetching ${#DEB_PACKAGES[@]} Debian $DEBIAN_SUITE packages from $DEBIAN_URL (private apt config in $apt)"
    local log=$DEB_DIR/apt.log
    # apt-get update exits 0 when it cannot connect, with a "W: Failed to fetch" line.
    if ! apt-get "${opts[@]}" update >"$log" 2>&1 || grep -qE '^(E:|W: Failed to fetch)' "$log"; then
        unavailable "cannot read Debian $DEBIAN_SUITE from $DEBIAN_URL ($(grep -m1 -E '^(E:|W: Failed to fetch)' "$log" || tail -n1 "$log"))"
    fi
    if ! (cd "$DEB_DIR/debs" && apt-get "${opts[@]}" download "${DEB_PACKAGES[@]}") >>"$log" 2>&1; then
        unavailable "cannot download Debian $DEBIAN_SUITE packages ($(grep -m1 -E '^(E|Err):' "$log" || tail -n1 "$log"))"
    fi
    local deb
    for deb in "$DEB_DIR"/debs/*.deb; do dpkg-deb -x "$deb" "$DEB_ROOT"; done
    (cd "$DEB_DIR/debs" && ls) >"$DEB_DIR/versions.txt"
    rm -rf "$DEB_DIR/debs" "$apt/lists" "$apt/cache"
    echo "$DEBIAN_URL ${DEB_PACKAGES[*]}" >"$stamp"
}

# One npm package's tarball, extracted into $1 (the tarball itself is not kept).
fetch_npm() {
    local dest=$1 spec=$2
    [ -f "$dest/package/package.json" ] && return
    rm -rf "$dest" "$dest.tmp"
    mkdir -p "$dest.tmp"
    echo "android-check: fetching $spec from npm"
    if ! npm pack "$spec" --loglevel=error --fetch-retries=1 --pack-destination "$dest.tmp" \
            --cache "$dest.tmp/npm-cache" >"$dest.tmp/npm.log" 2>&1; then
        unavailable "cannot fetch $spec from the npm registry $(npm config get registry) ($(grep -m1 -E '^npm (error|ERR)' "$dest.tmp/npm.log" | grep -v 'A complete log' || tail -n1 "$dest.tmp/npm.log"))"
    fi
    mkdir -p "$dest.tmp/x"
    tar -xzf "$dest.tmp"/*.tgz -C "$dest.tmp/x" "${@:3}"
    mv "$dest.tmp/x" "$dest"
    rm -rf "$dest.tmp"
}

fetch_debian
KOTLIN_HOME=$CACHE/kotlin-compiler-$KOTLIN_VERSION
EXECUTORCH_NPM=$CACHE/react-native-executorch-$EXECUTORCH_NPM_VERSION
fetch_npm "$KOTLIN_HOME" "kotlin-compiler@$KOTLIN_VERSION"
fetch_npm "$EXECUTORCH_NPM" "react-native-executorch@$EXECUTORCH_NPM_VERSION" \
    package/package.json package/android/libs/classes.jar

ANDROID_JAR=$DEB_ROOT/usr/lib/android-sdk/platforms/android-23/android.jar
EXECUTORCH_JAR=$EXECUTORCH_NPM/package/android/libs/classes.jar
JUNIT_JAR=$DEB_ROOT/usr/share/java/junit4.jar
HAMCREST_JAR=$DEB_ROOT/usr/share/java/hamcrest-core.jar
JSON_JAR=$DEB_ROOT/usr/share/java/com.android.json.jar
KOTLINC=$KOTLIN_HOME/package/bin/kotlinc
STDLIB_JAR=$KOTLIN_HOME/package/lib/kotlin-stdlib.jar
AAPT=$DEB_ROOT/usr/lib/android-sdk/build-tools/debian/aapt
for f in "$ANDROID_JAR" "$EXECUTORCH_JAR" "$JUNIT_JAR" "$HAMCREST_JAR" "$JSON_JAR" "$KOTLINC" "$STDLIB_JAR" "$AAPT"; do
    [ -e "$f" ] || { echo "android-check: $f is missing from the cache; delete $CACHE and run again" >&2; exit 1; }
done

# ---------------------------------------------------------------- build

BUILD=$(mktemp -d "${TMPDIR:-/tmp}/android-check.XXXXXX")
trap 'rm -rf "$BUILD"' EXIT
SRC=$APP/src
fail() { echo "android-check FAILED: $*" >&2; exit 1; }

# AGP writes the Gradle `namespace` into the merged manifest; aapt needs it there.
NAMESPACE=$(sed -n 's/^ *namespace *= *"\([^"]*\)".*/\1/p' "$APP/build.gradle.kts" | head -n1)
MIN_SDK=$(sed -n 's/^ *minSdk *= *\([0-9]*\).*/\1/p' "$APP/build.gradle.kts" | head -n1)
[ -n "$NAMESPACE" ] && [ -n "$MIN_SDK" ] || fail "$APP/build.gradle.kts: no 'namespace = \"...\"' or 'minSdk = N' line found"

echo "android-check: linking resources with aapt against android.jar (API 23)"
mkdir -p "$BUILD/manifest" "$BUILD/gen" "$BUILD/r" "$BUILD/main" "$BUILD/test"
sed "s|<manifest |<manifest package=\"$NAMESPACE\" |" "$SRC/main/AndroidManifest.xml" >"$BUILD/manifest/AndroidManifest.xml"
# aapt's libraries live in the extracted tree, not in /usr/lib.
AAPT_LIBS=$(printf '%s:' "$DEB_ROOT"/usr/lib/*/android "$DEB_ROOT"/usr/lib/*-linux-gnu "$DEB_ROOT"/lib/*-linux-gnu)
LD_LIBRARY_PATH=$AAPT_LIBS${LD_LIBRARY_PATH:-} "$AAPT" package -f -m --min-sdk-version "$MIN_SDK" \
    -M "$BUILD/manifest/AndroidManifest.xml" -S "$SRC/main/res" -I "$ANDROID_JAR" -J "$BUILD/gen" \
    || fail "aapt rejected the resources or manifest of $APP (above)"
javac -nowarn -d "$BUILD/r" $(find "$BUILD/gen" -name '*.java') || fail "javac could not compile the generated R.java"

# -no-jdk: java.* comes from android.jar (API 23), what a device offers, not from the host JDK.
# -Werror: a warning fails the check too.
KOTLINC_FLAGS=(-no-jdk -jvm-target 17 -Werror)
# kotlinc runs for seconds, not hours: the quick C1 JIT and a one-thread GC cut its CPU time for
# src/main from 31 s to 17 s on the busy 2-core machine.
export JAVA_OPTS=${JAVA_OPTS:--Xmx768M -XX:TieredStopAtLevel=1 -XX:+UseSerialGC}

echo "android-check: compiling src/main with kotlinc $KOTLIN_VERSION against android.jar + ExecuTorch classes"
mapfile -t MAIN_SOURCES < <(find "$SRC/main" -name '*.kt' | sort)
[ ${#MAIN_SOURCES[@]} -gt 0 ] || fail "no Kotlin sources under $SRC/main"
"$KOTLINC" "${KOTLINC_FLAGS[@]}" -cp "$ANDROID_JAR:$EXECUTORCH_JAR:$BUILD/r" -d "$BUILD/main" "${MAIN_SOURCES[@]}" \
    || fail "kotlinc could not compile src/main of $APP (errors above)"

echo "android-check: compiling src/test"
mapfile -t TEST_SOURCES < <(find "$SRC/test" -name '*.kt' | sort)
[ ${#TEST_SOURCES[@]} -gt 0 ] || fail "no Kotlin sources under $SRC/test"
"$KOTLINC" "${KOTLINC_FLAGS[@]}" -cp "$ANDROID_JAR:$EXECUTORCH_JAR:$BUILD/r:$BUILD/main:$JUNIT_JAR:$HAMCREST_JAR" \
    -d "$BUILD/test" "${TEST_SOURCES[@]}" || fail "kotlinc could not compile src/test of $APP (errors above)"

# ---------------------------------------------------------------- run the unit tests

mapfile -t TEST_CLASSES < <(cd "$BUILD/test" && find . -name '*Test.class' | sed 's|^\./||; s|\.class$||; s|/|.|g' | sort)
[ ${#TEST_CLASSES[@]} -gt 0 ] || fail "no *Test classes compiled from $SRC/test"
echo "android-check: running ${TEST_CLASSES[*]} with JUnit 4"
# Android's real org.json comes before android.jar, whose org.json classes are stubs that throw.
java -Dmnv3.assets="$SRC/main/assets" -cp "$BUILD/test:$BUILD/main:$BUILD/r:$STDLIB_JAR:$JUNIT_JAR:$HAMCREST_JAR:$JSON_JAR:$ANDROID_JAR" \
    org.junit.runner.JUnitCore "${TEST_CLASSES[@]}" || fail "JUnit tests failed (above)"
echo "android-check: OK (aapt, kotlinc $KOTLIN_VERSION, android.jar API 23, react-native-executorch $EXECUTORCH_NPM_VERSION classes, JUnit 4)"
