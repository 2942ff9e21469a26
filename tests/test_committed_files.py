"""What the repository commits: no machine's folder layout, no file that can run code on load."""
from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# A path under a home, work or temporary folder of some machine, as JSON, HTML or a notebook holds it.
ABSOLUTE = re.compile(r"""(?<![\w.])(/(?:root|home|Users|work|tmp|var/folders|mnt|srv|opt)/[\w.-]+)""")
CHECKED = ("reports/", "notebooks/")


def _tracked(prefixes: tuple[str, ...]) -> list[Path]:
    try:
        out = subprocess.run(["git", "ls-files", "-z", *prefixes], cwd=REPO, capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("not a git checkout: the committed files cannot be listed")
    return [REPO / name for name in out.split("\0") if name]


def absolute_paths(text: str) -> list[str]:
    return sorted(set(ABSOLUTE.findall(text)))


def test_the_pattern_finds_machine_paths_and_spares_urls():
    assert absolute_paths('"cache_dir": "/root/.cache/mnv3"') == ["/root/.cache"]
    assert absolute_paths("runs_dir = '/work/main/runs/quick'") == ["/work/main"]
    assert absolute_paths("https://example.org/home/page and ../shared/datasets and reports/full") == []


def test_no_committed_report_notebook_or_result_holds_an_absolute_path():
    found = {}
    for path in _tracked(CHECKED):
        if path.suffix in {".safetensors", ".png", ".pte", ".pt"} or not path.is_file():
            continue
        hits = absolute_paths(path.read_text(errors="replace"))
        if hits:
            found[str(path.relative_to(REPO))] = hits[:3]
    assert not found, f"absolute machine paths in committed files: {found}"


def test_no_committed_pickle_checkpoints():
    pickles = [str(p.relative_to(REPO)) for p in _tracked(("reports/",)) if p.suffix in {".pt", ".pth", ".pkl", ".ckpt"}]
    assert not pickles, f"committed weights must be .safetensors (a pickle can run code on load): {pickles}"
