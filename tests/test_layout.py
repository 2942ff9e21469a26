"""The package's shape, as the README's "What is where" promises it: imports go one way, and no
module grows back into a file that mixes jobs."""
from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "mnv3"

# Bottom to top: a module may import only modules before it (the README's import order).
ORDER = ["files", "lock", "paths", "timing", "environment", "layers", "spec", "model", "torchvision_compat", "data", "imagefolder",
         "augment", "experiments", "records", "ema", "step", "summary", "runs", "own_runs", "checkpoint", "pretrained", "train", "evaluate",
         "predict", "publish", "nonlinearities", "export", "mathml", "bench", "search", "reports"]  # fmt: skip
MAX_LINES = 650  # "about 600": room for a docstring, not for a second job


def _unit(path: Path) -> str:
    """The top-level module or subpackage a file belongs to (``export/pte.py`` -> ``export``)."""
    return path.relative_to(PACKAGE).parts[0].removesuffix(".py")


def _imported_units(path: Path) -> set[str]:
    """The package's modules that ``path`` imports, lazily inside functions too."""
    here = list(path.relative_to(PACKAGE).parts[:-1])
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level:
            base = here[: len(here) - (node.level - 1)]
            target = base + (node.module.split(".") if node.module else [a.name for a in node.names][:1] if not base else [])
            if target and target[0] not in ("__init__", "__version__"):
                found.add(target[0])
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("mnv3."):
            found.add(node.module.split(".")[1])
    return found - {_unit(path)}


def _unresolved(path: Path) -> list[str]:
    """Relative imports of ``path`` that name no module of the package (a lazy one fails only when run)."""
    here = list(path.relative_to(PACKAGE).parts[:-1])
    missing = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level and node.module:
            base = PACKAGE.joinpath(*here[: len(here) - (node.level - 1)], *node.module.split("."))
            if not (base.with_suffix(".py").is_file() or (base / "__init__.py").is_file()):
                missing.append(f"{'.' * node.level}{node.module} (line {node.lineno})")
    return missing


def _files() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py") if p.name != "__init__.py" or p.parent != PACKAGE)


def test_the_readme_states_the_same_order():
    readme = (PACKAGE.parent / "README.md").read_text()
    paragraph = readme.split("Imports go one way", 1)[1].split("\n\n")[1]  # the list, after the sentence
    assert re.findall(r"`([a-z_]+)`", paragraph) == ORDER


def test_every_module_has_a_place_in_the_order():
    units = {_unit(p) for p in _files()}
    assert units <= set(ORDER), f"add {sorted(units - set(ORDER))} to ORDER here and to the README's import order"


@pytest.mark.parametrize("path", _files(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_imports_go_one_way(path):
    unit = _unit(path)
    later = {u for u in _imported_units(path) if u in ORDER and ORDER.index(u) > ORDER.index(unit)}
    assert not later, f"{path.relative_to(PACKAGE)} ({unit}) imports {sorted(later)}, which come after it"


@pytest.mark.parametrize("path", _files(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_relative_imports_name_existing_modules(path):
    assert not _unresolved(path), f"{path.relative_to(PACKAGE)} imports modules that do not exist: {_unresolved(path)}"


def test_the_order_check_sees_a_backward_import(tmp_path, monkeypatch):
    # The check above would pass vacuously if _imported_units found nothing: show it finds one.
    fake = PACKAGE / "files.py"
    monkeypatch.setattr(Path, "read_text", lambda self, *a, **k: "def f():\n    from .runs import load_record\n")
    assert _imported_units(fake) == {"runs"}
    monkeypatch.setattr(Path, "read_text", lambda self, *a, **k: "def f():\n    from .mathml import x\n")
    assert _unresolved(PACKAGE / "reports" / "runner.py") == [".mathml (line 2)"]


@pytest.mark.parametrize("path", _files(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_no_module_is_a_second_room(path):
    lines = len(path.read_text().splitlines())
    assert lines <= MAX_LINES, f"{path.relative_to(PACKAGE)} has {lines} lines: split it by job (see the README's What is where)"
