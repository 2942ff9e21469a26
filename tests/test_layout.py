"""The package's shape, as the README's "What is where" promises it: imports go one way, and no
module grows back into a file that mixes jobs."""
from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "mnv3"

# Bottom to top: a module may import only modules before it (the README's import order).
ORDER = ["files", "arguments", "lock", "paths", "timing", "environment", "layers", "spec", "model", "torchvision_compat", "data", "imagefolder",
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


def _private(name: str) -> bool:
    """``_name`` is private; ``__name__`` (a dunder, such as ``__version__`` or ``__all__``) is not."""
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def _module_path(parts: list[str]) -> Path | None:
    """The file of the package module ``mnv3.<parts>`` (a package's ``__init__.py``), or None."""
    base = PACKAGE.joinpath(*parts)
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if parts and candidate.is_file() or not parts and candidate == PACKAGE / "__init__.py":
            return candidate
    return None


def _imported_module(path: Path, node: ast.ImportFrom) -> list[str] | None:
    """The package module an ``ImportFrom`` reads (parts below ``mnv3``), or None when it is outside the package."""
    if node.level:
        here = list(path.relative_to(PACKAGE).parts[:-1])
        return here[: len(here) - (node.level - 1)] + (node.module.split(".") if node.module else [])
    if node.module == "mnv3" or (node.module or "").startswith("mnv3."):
        return node.module.split(".")[1:]
    return None


def private_crossings(path: Path, source: str | None = None) -> list[str]:
    """Where ``path`` uses another package module's underscore-private name, as ``file:line name``.

    Two ways: ``from .x import _name`` (relative or absolute, at any depth, inside functions too),
    and ``module._name`` where ``module`` is bound by an import to a module of the package
    (``from . import deps; deps._executorch``, ``import mnv3.export as ex; ex._x``, ``mnv3.export._x``).
    """
    source = path.read_text() if source is None else source
    shown = path.relative_to(PACKAGE.parent)
    found, modules = [], {}  # modules: a local name -> the package module it is bound to (parts below mnv3)
    tree = ast.parse(source)
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            target = _imported_module(path, node)
            if target is None or _module_path(target) is None:
                continue
            for alias in node.names:
                submodule = _module_path(target + [alias.name]) is not None
                if _private(alias.name) and (submodule or _module_path(target) != path):
                    where = ".".join(target + [alias.name] if submodule else target) or "__init__"
                    found.append(f"{shown}:{getattr(alias, 'lineno', node.lineno)} imports {alias.name} from mnv3.{where}")
                elif submodule:
                    modules[alias.asname or alias.name] = target + [alias.name]
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name == "mnv3" or alias.name.startswith("mnv3."):
                    if alias.asname:
                        modules[alias.asname] = alias.name.split(".")[1:]
                    else:
                        modules["mnv3"] = []  # `import mnv3.x.y` binds the name mnv3
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and isinstance(node.value, (ast.Name, ast.Attribute)):
            chain, inner = [node.attr], node.value
            while isinstance(inner, ast.Attribute):
                chain.insert(0, inner.attr)
                inner = inner.value
            if not isinstance(inner, ast.Name) or inner.id not in modules:
                continue
            target = list(modules[inner.id])
            for attr in chain:
                if _private(attr):
                    if _module_path(target) != path:
                        found.append(f"{shown}:{node.lineno} reads {attr} of mnv3.{'.'.join(target) or '__init__'}")
                    break
                if _module_path(target + [attr]) is None:
                    break  # a public name of the module: what it holds is no module of ours
                target.append(attr)
    return sorted(set(found))


def _all_files() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def test_no_private_name_crosses_a_module_boundary():
    # A leading underscore tells a reader "only this file uses me"; a name another module uses is
    # an interface: give it a public name and a docstring (issue 28).
    crossings = [c for path in _all_files() for c in private_crossings(path)]
    assert not crossings, "underscore-private names used across modules:\n" + "\n".join(crossings)


def test_the_private_name_check_sees_every_form():
    # The check above would pass vacuously if private_crossings found nothing: show each form is found.
    bench = PACKAGE / "bench" / "machine.py"
    source = (
        "import mnv3.export.deps\n"
        "import mnv3.export as ex\n"
        "from . import formatting\n"
        "from ..export import deps\n"
        "from .formatting import (\n    fmt,\n    _round,\n)\n"
        "def f():\n"
        "    from ..export.deps import _onnx\n"
        "    from mnv3.export import __all__, _x\n"
        "    return deps._executorch(), ex._y, mnv3.export.deps._z, formatting._table, ex.deps._w, _local\n"
        "_local = formatting.fmt + ex.__all__\n"
    )
    found = private_crossings(bench, source)
    assert set(found) == {
        "mnv3/bench/machine.py:7 imports _round from mnv3.bench.formatting",
        "mnv3/bench/machine.py:10 imports _onnx from mnv3.export.deps",
        "mnv3/bench/machine.py:11 imports _x from mnv3.export",
        "mnv3/bench/machine.py:12 reads _executorch of mnv3.export.deps",
        "mnv3/bench/machine.py:12 reads _y of mnv3.export",
        "mnv3/bench/machine.py:12 reads _z of mnv3.export.deps",
        "mnv3/bench/machine.py:12 reads _table of mnv3.bench.formatting",
        "mnv3/bench/machine.py:12 reads _w of mnv3.export.deps",
    }, found
    # A package's __init__ binds its submodules with `from . import x`: their private names count too.
    init = PACKAGE / "export" / "__init__.py"
    assert private_crossings(init, "from . import deps\nq = deps._quiet_imports\n") == [
        "mnv3/export/__init__.py:2 reads _quiet_imports of mnv3.export.deps"
    ]
    # A module's own private names, and names outside the package, are no crossing.
    assert private_crossings(bench, "import torch\n_a = 1\ndef f():\n    return torch._C, _a\n") == []
