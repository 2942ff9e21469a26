"""`make android-check` (scripts/android_check.sh): the Android app compiles against android.jar and
the ExecuTorch Java API, its JVM unit tests pass, and a broken app fails the check.

The script fetches its tools once into .cache/android-check/. Where a registry cannot be reached it
exits 75 with one line saying which, and these tests skip with that line; any other failure fails.
About 3 minutes in all on the 2-core machine once the cache is filled (see android-demo/README.md).
"""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "scripts" / "android_check.sh"
APP = REPO / "android-demo" / "app"
EX_UNAVAILABLE = 75

pytestmark = pytest.mark.slow


def run_check(*args: str) -> subprocess.CompletedProcess:
    # The first call downloads about 130 MB (Debian packages, kotlinc, ExecuTorch classes).
    proc = subprocess.run(["bash", str(SCRIPT), *args], cwd=REPO, capture_output=True, text=True, timeout=1800)
    if proc.returncode == EX_UNAVAILABLE:
        pytest.skip(proc.stderr.strip().splitlines()[-1])
    return proc


def broken_copy(tmp_path: Path, relative: str, old: str, new: str) -> Path:
    """A copy of the app module (without generated assets) with `old` replaced by `new` in one file."""
    app = tmp_path / "app"
    shutil.copytree(APP, app, ignore=shutil.ignore_patterns("assets", "build"))
    path = app / relative
    text = path.read_text()
    assert old in text, f"{relative} no longer contains {old!r}; update this test"
    path.write_text(text.replace(old, new))
    return app


def test_app_compiles_and_its_unit_tests_pass_with_a_third_model(digits_assets, tmp_path):
    # The app as `make android-assets CUSTOM_RUN=...` leaves it: a model of your own images (the
    # digits run, gray 28x28, 10 classes) in assets/custom/, which AssetModelsTest reads.
    app = tmp_path / "app"
    shutil.copytree(APP, app, ignore=shutil.ignore_patterns("assets", "build"))
    shutil.copytree(digits_assets / "custom", app / "src" / "main" / "assets" / "custom")
    proc = run_check("--app", str(app))
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-6000:]
    assert "AssetModelsTest: custom (digits): 10 labels, input 1x1x28x28 gray, 10 images" in out
    tests = sorted(p.stem for p in (APP / "src" / "test").rglob("*Test.kt"))
    assert {"ModelSpecTest", "PreprocessorTest", "ScoresTest", "AssetModelsTest"} <= set(tests)
    for name in tests:
        assert f"org.mnv3.demo.{name}" in out
    # JUnit's summary counts every @Test of the three classes.
    n_tests = sum(p.read_text().count("@Test") for p in (APP / "src" / "test").rglob("*Test.kt"))
    assert f"OK ({n_tests} tests)" in out, out[-3000:]


def test_wrong_executorch_call_fails_the_compile(tmp_path):
    # Module.load takes the file's path (a String), not a java.io.File.
    app = broken_copy(
        tmp_path, "src/main/java/org/mnv3/demo/Classifier.kt", "Module.load(pte.absolutePath)", "Module.load(pte)"
    )
    proc = run_check("--app", str(app))
    assert proc.returncode == 1, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "kotlinc could not compile src/main" in proc.stderr
    assert "Classifier.kt" in proc.stderr


def test_appcompat_theme_fails_the_resource_link(tmp_path):
    # AppCompat is not part of android.jar (it lives on Google's Maven), so aapt cannot find the parent.
    app = broken_copy(
        tmp_path,
        "src/main/res/values/themes.xml",
        'parent="android:Theme.Material.Light.NoActionBar"',
        'parent="Theme.AppCompat.Light.NoActionBar"',
    )
    proc = run_check("--app", str(app))
    assert proc.returncode == 1, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "aapt rejected the resources" in proc.stderr
    assert "Theme.AppCompat.Light.NoActionBar" in proc.stderr


def test_model_json_null_bug_fails_the_unit_tests(tmp_path):
    # The old code: Android's JSONObject.has() is true for a JSON null, so getDouble() throws.
    app = broken_copy(
        tmp_path,
        "src/main/java/org/mnv3/demo/ModelSpec.kt",
        'testAccuracy = optionalDouble(root, "test_accuracy")',
        'testAccuracy = if (root.has("test_accuracy")) root.getDouble("test_accuracy") else null',
    )
    proc = run_check("--app", str(app))
    out = proc.stdout + proc.stderr
    assert proc.returncode == 1, out[-6000:]
    assert "JUnit tests failed" in proc.stderr
    assert "nullOptionalFieldsAreNull" in out
    assert "JSONException" in out
