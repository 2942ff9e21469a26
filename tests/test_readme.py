"""The README's examples work as pasted: its model code block runs, its example spec loads and
builds, and the bounds it quotes are the ones mnv3.spec enforces."""
from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
README = (REPO / "README.md").read_text()


def fenced_block(section: str, language: str) -> str:
    """The first ```language block after the heading ``section`` (a line of the README)."""
    after = README.split(f"\n{section}\n", 1)
    assert len(after) == 2, f"the README has no heading {section!r}"
    match = re.search(rf"^```{language}\n(.*?)^```$", after[1], flags=re.S | re.M)
    assert match, f"no ```{language} block under {section!r}"
    return match.group(1)


def test_the_model_block_runs_as_pasted(monkeypatch):
    code = fenced_block("## The model", "python")
    monkeypatch.chdir(REPO)  # as a reader pastes it: from the repository root
    namespace: dict = {}
    exec(compile(code, "README.md (## The model)", "exec"), namespace)  # noqa: S102 - our own README
    import mnv3

    assert isinstance(namespace["ours"], mnv3.MobileNetV3) and isinstance(namespace["model"], mnv3.MobileNetV3)
    assert namespace["model"].config["width_mult"] == 0.75


def test_the_example_spec_loads_and_builds(tmp_path):
    from mnv3 import build_model
    from mnv3.spec import estimate_parameters, load_spec

    path = tmp_path / "three_blocks.json"
    path.write_text(fenced_block("### Spec files", "json"))
    spec = load_spec(path)
    assert spec.name == "three_blocks" and len(spec.blocks) == 3 and spec.head.out == 240
    model = build_model(path, num_classes=10).eval()
    assert model(torch.zeros(2, 3, 32, 32)).shape == (2, 10)
    assert sum(p.numel() for p in model.parameters()) == estimate_parameters(spec, num_classes=10)


def test_the_spec_table_quotes_the_loaders_bounds():
    from mnv3 import spec

    section = README.split("\n### Spec files\n", 1)[1].split("\n## ", 1)[0]
    assert f"a positive odd integer up to {spec.MAX_KERNEL}" in section
    assert section.count(f"a positive integer up to {spec.MAX_CHANNELS}") == 4  # exp_size, out, head out, hidden
    assert f"a list of 1 to {spec.MAX_BLOCKS} rows" in section
    assert f"at most {spec.MAX_PARAMETERS:,} parameters" in section
    assert spec.MAX_SPEC_BYTES == 2**20 and "at most 1 MiB" in section
    # every field the loader knows is in the table, and no other
    rows = (spec.StemSpec, spec.BlockSpec, spec.HeadSpec)
    fields = {f.name for row in rows for f in dataclasses.fields(row)} | {"name", "stem", "blocks", "head", "notes", "paper_table"}
    table = [line for line in section.splitlines() if line.startswith("| ") and "---" not in line][1:]
    named = {name for line in table for name in re.findall(r"`([a-z_]+)`", line.split("|")[2])}
    assert named == fields


@pytest.mark.parametrize("field, value, words", [
    ("kernel", 13, "a positive odd integer up to 11"),
    ("stride", 3, "1 or 2"),
    ("exp_size", 4097, "a positive integer up to 4096"),
])  # fmt: skip
def test_a_value_past_a_quoted_bound_is_refused(tmp_path, field, value, words):
    import json

    from mnv3.spec import SpecError, load_spec

    data = json.loads(fenced_block("### Spec files", "json"))
    data["blocks"][1][field] = value
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(data))
    with pytest.raises(SpecError, match=re.escape(f"blocks[1] (table row 3): field '{field}' is {value}; allowed: {words}")):
        load_spec(path)


def _make_help_targets() -> list[str]:
    import shutil
    import subprocess

    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    out = subprocess.run(["make", "-s", "help"], cwd=REPO, capture_output=True, text=True, check=True).stdout
    return [line.split()[1] for line in out.splitlines()]


def test_the_make_table_has_every_target_make_help_lists():
    table = README.split("\n## Make targets\n", 1)[1].split("\n\n", 1)[0]
    rows = re.findall(r"^\| `make ([a-z-]+)` \|", table, flags=re.M)
    assert sorted(rows) == sorted(_make_help_targets())


def test_the_android_assets_row_says_what_it_makes_first_and_how_to_do_without(capsys):
    # The probe: the row did not say that the target trains the two quick runs when missing.
    from mnv3.export.cli import main as export_main

    table = README.split("\n## Make targets\n", 1)[1].split("\n\n", 1)[0]
    row = next(line for line in table.splitlines() if line.startswith("| `make android-assets` |"))
    makefile = (REPO / "Makefile").read_text()
    prerequisites = re.search(r"^android-assets: (\$\(foreach .*)$", makefile, flags=re.M).group(1)
    assert "test.json" in prerequisites and re.search(r"^ANDROID_RUNS\b.*mnist_small.*cifar10_small_s1", makefile, flags=re.M)
    assert "`make setup`" in row and "`mnist_small` and `cifar10_small_s1` runs, trained when their `test.json` is missing" in row
    command = re.search(r"`(python -m mnv3\.export android-assets --custom RUN_DIR)`", row).group(1)
    with pytest.raises(SystemExit) as shown:  # the command's options exist
        export_main(command.split()[3:] + ["--help"])
    assert shown.value.code == 0 and "--custom RUN" in capsys.readouterr().out


def test_the_readme_names_the_export_extra_that_export_help_names():
    from mnv3.export import INSTALL_HINT

    section = README.split("\n## Mobile export and the Android app\n", 1)[1].split("\n## ", 1)[0]
    assert "`[export]` extra" in section and f"`{INSTALL_HINT}`" in section


def test_the_benchmark_durations_agree_and_name_the_short_profiles(capsys):
    import json

    from mnv3.bench import main as bench_main

    recorded = sum(json.loads((REPO / "reports" / "bench" / f"{name}.json").read_text())["seconds"]
                   for name in ("inference", "training", "frontier"))  # fmt: skip
    said = f"{recorded:.0f} s"
    assert said == "150 s"
    with pytest.raises(SystemExit):
        bench_main(["--help"])
    help_text = capsys.readouterr().out
    makefile = (REPO / "Makefile").read_text().split("\nbench:", 1)[0].rsplit("\n\n", 1)[1]
    section = README.split("\n## Benchmarks\n", 1)[1].split("\n## ", 1)[0]
    for text in (help_text, makefile, section):
        assert said in text and "several minutes" in text
        assert not re.search(r"~?\d+ min\b", text), "a duration in minutes that no record holds"
    assert "--quick" in section and "--tiny" in section
