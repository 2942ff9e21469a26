"""The notebooks, executed headlessly through the same runner as `make reports`, and their HTML.

The notebooks run with fast parameters on the tiny runs of conftest (trained on the synthetic
dataset, so no real data is needed). The checks look inside the pages: the embedded figures
(PNG data URIs) and the rows of the tables, not just the files.
"""
from __future__ import annotations

import ast
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import nbformat
import pytest

from mnv3 import build_model, model_from_config, paths, reports, runs
from mnv3.export import readers
from mnv3.experiments import EXPERIMENTS
from mnv3.summary import summarize, totals

REPO = Path(__file__).resolve().parents[1]

# Small enough that every notebook runs in seconds; the kernels' start dominates.
FAST = {
    "points": 241,
    "timing_elements": 20_000,
    "timing_repeats": 3,
    "check_input_size": 64,
    "max_samples": 256,
    "num_misclassified": 8,
}

FIGURE = 'src="data:image/png;base64,'
# Figures each page must embed at least (05 adds its misclassified grid when there are mistakes).
MIN_FIGURES = {"01_nonlinearities": 2, "02_architecture": 1, "03_train_mnist": 2, "04_train_cifar10": 4, "05_evaluate": 1,
               "06_export": 1}


def _exported_experiments(request) -> list[str]:
    """The experiments of tiny_runs with an export: mnist_small (conftest's exported_run, made once
    per session), or none where the export extras are not installed."""
    try:
        request.getfixturevalue("exported_run")
    except pytest.skip.Exception:
        return []
    return ["mnist_small"]


@pytest.fixture(scope="module")
def report_run(tiny_runs, tmp_path_factory, request):
    exported = _exported_experiments(request)
    out = tmp_path_factory.mktemp("reports") / "quick"
    messages: list[str] = []
    results = reports.run_reports(
        "quick",
        runs_dir=tiny_runs,
        reports_dir=out,
        data_root=tmp_path_factory.mktemp("data"),
        overrides=FAST,
        log=messages.append,
    )
    return {"results": results, "out": out, "runs": tiny_runs, "log": messages, "exported": exported}


def not_executed(report_run, result) -> bool:
    """06_export is executed only for the runs that have an export; the others get a page naming make export."""
    return result.notebook.name == "06_export" and result.experiment not in report_run["exported"]


def page(report_run, name: str) -> str:
    return (report_run["out"] / f"{name}.html").read_text(encoding="utf-8")


def table_rows(html: str) -> list[str]:
    return re.findall(r"<tr.*?</tr>", html, flags=re.S)


def cells(row: str) -> list[str]:
    return [re.sub(r"<[^>]+>", "", c).strip() for c in re.findall(r"<t[dh][^>]*>(.*?)</t[dh]>", row, flags=re.S)]


# ------------------------------------------------------------------------------ execution


def test_every_notebook_executes_headlessly(report_run):
    results = report_run["results"]
    expected = [nb.report_name(e) for nb in reports.NOTEBOOKS for e in nb.executions()]
    assert [r.name for r in results] == expected
    failed = [r.message for r in results if r.status != "ok" and not not_executed(report_run, r)]
    assert not failed, failed
    for r in results:
        assert r.html.parent == report_run["out"]
        if not_executed(report_run, r):
            # no placeholder page: the index says why (see test_unexported_runs_...)
            assert r.status == "missing" and "export/parity.json" in r.message and "make export" in r.message
            assert not r.html.exists()
            continue
        assert r.html.is_file()
        executed = report_run["out"] / "notebooks" / f"{r.name}.ipynb"
        assert executed.is_file()
        nb = nbformat.read(executed, as_version=4)
        # papermill injected the runner's parameters, with paths relative to the repository
        injected = [c for c in nb.cells if "injected-parameters" in c.metadata.get("tags", [])]
        assert len(injected) == 1
        if "runs_dir" in injected[0].source:
            assert f'runs_dir = "{paths.shown_path(report_run["runs"])}"' in injected[0].source
        if r.notebook.name in ("03_train_mnist", "04_train_cifar10"):
            assert "launch_training = False" in injected[0].source
        if r.notebook.name == "06_export":
            assert "launch_export = False" in injected[0].source


@pytest.mark.parametrize("notebook", [nb.name for nb in reports.NOTEBOOKS])
def test_pages_embed_their_figures(report_run, notebook):
    nb = reports.notebook_by_name(notebook)
    executed = [e for e in nb.executions() if not (notebook == "06_export" and e not in report_run["exported"])]
    if not executed:
        pytest.skip("no run was exported (the export extras are not installed)")
    for experiment in executed:
        html = page(report_run, nb.report_name(experiment))
        expected = MIN_FIGURES.get(notebook, 0)
        if notebook == "05_evaluate" and "No test image was misclassified" not in html:
            expected += 1  # the grid of misclassified images
        assert html.count(FIGURE) >= expected, f"{nb.report_name(experiment)}: {html.count(FIGURE)} figures"


def test_evaluation_pages_show_a_misclassified_grid(report_run):
    # The tiny CIFAR-10 runs are far from perfect, so at least those show the grid.
    pages = [page(report_run, f"05_evaluate-{e}") for e in EXPERIMENTS]
    assert any("misclassified test images" in p and p.count(FIGURE) >= 2 for p in pages)


# ------------------------------------------------------------------------------ tables


def test_nonlinearities_page_has_the_errors_and_timings(report_run):
    html = page(report_run, "01_nonlinearities")
    rows = [cells(r) for r in table_rows(html)]
    functions = {r[0] for r in rows if r}
    assert {"h-sigmoid", "h-swish"} <= functions  # the maximum-error table
    assert {"sigmoid", "h-sigmoid (fused)", "swish (x * sigmoid(x))", "h-swish (fused)"} <= functions  # the timings
    error = next(r for r in rows if r and r[0] == "h-swish")
    assert error[1] == "swish" and 0.1 < float(error[2]) < 0.2  # max |h-swish - swish| on [-6, 6] is 0.14


def test_architecture_page_has_both_tables_row_by_row(report_run):
    html = page(report_run, "02_architecture")
    rows = [cells(r) for r in table_rows(html)]
    for arch, n_rows in (("small", 16), ("large", 20)):
        expected = summarize(build_model(arch), 224)
        assert len(expected) == n_rows
        for i, row in enumerate(expected, start=1):
            wanted = [str(i), row["input"], row["operator"], "-" if row["exp_size"] is None else str(row["exp_size"]),
                      str(row["out"]), "✓" if row["se"] else "-", row["nl"] or "-", str(row["stride"]),
                      str(row["params"]), str(row["macs"])]
            assert wanted in rows, f"{arch} row {i} missing: {wanted}"
    # totals against the paper and torchvision, and the live equivalence check
    assert any(r[:3] == ["MobileNetV3-Small 1.0", "2542856", "2542856"] for r in rows)
    assert any(r[:3] == ["MobileNetV3-Large 1.0", "5483032", "5483032"] for r in rows)
    assert "mnv3 and torchvision compute the same function" in html
    for name in EXPERIMENTS:
        assert any(r and r[0] == name for r in rows)


def test_training_pages_list_the_runs(report_run):
    for notebook, names in (("03_train_mnist", ["mnist_small"]), ("04_train_cifar10", EXPERIMENTS[1:])):
        html = page(report_run, notebook)
        rows = [cells(r) for r in table_rows(html)]
        for name in names:
            test = json.loads((report_run["runs"] / name / "test.json").read_text())
            row = next(r for r in rows if r and r[0] == name)
            assert runs.format_accuracy(test["test_accuracy"]) in row
        assert "Missing runs" not in html


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_evaluation_page_tables(report_run, experiment):
    html = page(report_run, f"05_evaluate-{experiment}")
    rows = [cells(r) for r in table_rows(html)]
    first = {r[0] for r in rows if r}
    config = json.loads((report_run["runs"] / experiment / "config.json").read_text())
    from mnv3.data import dataset_info

    names = dataset_info(config["dataset"]).classes
    # the classification report: one row per class, then the averages
    for name in [*names, "accuracy", "macro avg", "weighted avg"]:
        assert name in first, name
    report_rows = [r for r in rows if r and r[0] in names]
    assert sum(int(r[-1]) for r in report_rows[: len(names)]) == FAST["max_samples"]
    # the accuracy row as scikit-learn prints it: its value under f1-score and the support, nothing else
    accuracy = next(r for r in rows if r and r[0] == "accuracy")
    assert accuracy[1:3] == ["", ""] and 0 <= float(accuracy[3]) <= 1 and accuracy[4] == str(FAST["max_samples"])
    assert "NaN" not in re.sub(r"data:image/png;base64,[A-Za-z0-9+/=]+", "", html)  # base64 may spell it
    # micro, macro and weighted averages
    assert {"micro", "macro", "weighted"} <= first
    assert "confusion matrix" in html
    assert "most-confused pairs" in html.lower()


def html_table(html: str, marker: str) -> dict[str, list[str]]:
    """The rows, keyed by their first cell, of the page's first table whose text holds ``marker``."""
    table = next(t for t in re.findall(r"<table.*?</table>", html, flags=re.S) if marker in t)
    return {c[0]: c for c in map(cells, table_rows(table)) if c}


def test_export_page_tables(report_run):
    if "mnist_small" not in report_run["exported"]:
        pytest.skip("no run was exported (the export extras are not installed)")
    html = page(report_run, "06_export-mnist_small")
    export_dir = report_run["runs"] / "mnist_small" / "export"
    parity = json.loads((export_dir / "parity.json").read_text())
    manifest = json.loads((export_dir / "model.json").read_text())
    # the parity table: one row per artefact, with its file, size, logit difference, agreement, accuracy, latency
    table = html_table(html, "max abs logit diff vs eager")
    rows = {row["artefact"]: row for row in parity["rows"]}
    assert list(rows) == ["eager", "pte", "pte-int8", "ptl", "onnx"]
    for name, row in rows.items():
        shown = table[readers.ARTEFACT_LABELS[name]]
        assert runs.format_accuracy(row["test_accuracy"]) in shown
        assert f"{row['latency_ms_median']:.3f}" in shown
        assert f"{row['max_abs_logit_diff']:.2e}" in shown
        assert f"{100 * row['top1_agreement']:.2f}%" in shown
        assert f"{row['latency_ms_median'] / rows['eager']['latency_ms_median']:.2f}x" in shown
        if name != "eager":
            assert row["file"] in shown and f"{row['size_bytes'] / 1e6:.2f}" in shown
    assert "legacy" in readers.ARTEFACT_LABELS["ptl"]
    # the int8 budget, stated from the accuracies
    drop = 100 * (rows["pte"]["test_accuracy"] - rows["pte-int8"]["test_accuracy"])
    assert f"{abs(drop):.2f} points" in html if drop else "loses nothing" in html
    assert ("Budget met" if drop <= 0.5 else "Budget not met") in html
    # the XNNPACK delegation of both programs, and the ops inside the delegate
    delegation = html_table(html, "fully delegated")
    for label in ("ExecuTorch .pte fp32", "ExecuTorch .pte int8"):
        assert delegation[label][1] == "yes" and "XnnpackBackend" in delegation[label]
    assert "aten.convolution.default" in html_table(html, "op in the delegate")
    # model.json, field by field
    fields = html_table(html, "source_run.checkpoint_sha256")
    assert fields["input.channel_order"][1] == "gray"
    assert fields["input.shape"][1] == "1, 1, 28, 28"
    assert fields["files.pte_fp32"][1] == "model.pte"
    assert fields["source_run.checkpoint_sha256"][1] == manifest["source_run"]["checkpoint_sha256"]
    assert fields["labels"][1] == ", ".join(manifest["labels"])
    assert html.count(FIGURE) >= 1  # size, latency and accuracy panels


def index_entry(html: str, label: str) -> str:
    """The index's list item for one report (its text, tags removed)."""
    items = re.findall(r"<li>((?:(?!<li>).)*?)</li>", html, flags=re.S)  # innermost items
    item = next(i for i in items if re.sub(r"<[^>]+>", "", i).startswith(label))
    return re.sub(r"<[^>]+>", "", item)


def test_unexported_runs_are_named_on_the_index_with_make_export(report_run):
    index = page(report_run, "index")
    for experiment in EXPERIMENTS:
        if experiment in report_run["exported"]:
            continue
        assert not (report_run["out"] / f"06_export-{experiment}.html").exists()  # no placeholder page to commit
        entry = index_entry(index, experiment + " (not executed")
        assert "make export PROFILE=quick" in entry and f"{experiment}/export/parity.json" in entry


def test_export_page_never_exports_headlessly(trained_run, tmp_path):
    # A run without an export: even with launch_export=True the runner does not execute the notebook.
    runs_dir = tmp_path / "runs"
    runs_dir.mkdir()
    shutil.copytree(trained_run, runs_dir / "mnist_small", ignore=shutil.ignore_patterns("export"))
    nb = reports.notebook_by_name("06_export")
    results = reports.run_reports("quick", runs_dir=runs_dir, reports_dir=tmp_path / "out", only=["06_export"],
                                  overrides={"launch_export": True}, log=lambda m: None)
    assert [r.status for r in results] == ["missing"] * len(nb.executions())
    assert not (runs_dir / "mnist_small" / "export").exists()
    assert not (tmp_path / "out" / "06_export-mnist_small.html").exists()
    assert "make export PROFILE=quick" in index_entry((tmp_path / "out" / "index.html").read_text(), "mnist_small (not executed")


def test_interactive_commands_use_absolute_paths(tmp_path, monkeypatch):
    # The notebooks run from notebooks/ with paths like ../runs/quick, and launch the command from
    # the repository root: the paths must not depend on the folder the command starts in.
    from mnv3.train import parse_args

    (tmp_path / "notebooks").mkdir()
    monkeypatch.chdir(tmp_path / "notebooks")
    cmd = runs.train_command("mnist_small", "quick", "../runs/quick", data_root="../data", data_mirror="../mirror")
    monkeypatch.chdir(tmp_path)
    args, _ = parse_args(cmd[3:])
    assert Path(args.out) / args.profile / args.experiment == tmp_path / "runs" / "quick" / "mnist_small"
    assert Path(args.data_root) == tmp_path / "data" and Path(args.data_mirror) == tmp_path / "mirror"
    with pytest.raises(ValueError, match="runs/full"):
        runs.train_command("mnist_small", "full", tmp_path / "reports" / "full" / "runs")

    monkeypatch.chdir(tmp_path / "notebooks")
    cmd = readers.export_command("../runs/quick/mnist_small", data_root="../data", data_mirror="../mirror")
    assert cmd[3] == str(tmp_path / "runs" / "quick" / "mnist_small")
    assert cmd[cmd.index("--data-root") + 1] == str(tmp_path / "data")
    assert cmd[cmd.index("--data-mirror") + 1] == str(tmp_path / "mirror")


def test_ablation_pages_say_whether_runs_trained_alike(report_run):
    html = page(report_run, "04_train_cifar10")
    # two comparisons (stride, then Small against Large), each with its note
    assert html.count("Like with like") + html.count("These runs did not train alike") == 2


def _absolute_mentions(text: str, path: Path) -> list[str]:
    """Where ``text`` names ``path`` absolutely (not as the tail of a relative ../../tmp/... path)."""
    return [text[max(0, m.start() - 30): m.end()] for m in re.finditer(re.escape(str(path)), text)
            if m.start() == 0 or text[m.start() - 1] not in "./"]


def test_pages_and_executed_notebooks_show_no_absolute_paths(report_run):
    # The runner passes paths relative to the repository; nothing written may name the runs'
    # folder, the data folder or the checkout absolutely.
    written = [*report_run["out"].glob("*.html"), *report_run["out"].glob("notebooks/*.ipynb")]
    assert len(written) > 10
    for file in written:
        text = file.read_text(encoding="utf-8")
        for path in (report_run["runs"].parent.parent, REPO):
            assert not _absolute_mentions(text, path), (file.name, _absolute_mentions(text, path)[:3])


def test_formulas_render_offline_in_a_browser(report_run, tmp_path, headless_browser):
    # The nonlinearities page holds the paper's formulas. Rendered by a browser without network,
    # they must be MathML elements, not raw LaTeX: the visible text holds no $$ and no \frac.
    browser = headless_browser
    html_page = report_run["out"] / "01_nonlinearities.html"
    source = html_page.read_text(encoding="utf-8")
    assert "mathjax" not in source.lower()  # no script fetched from a CDN
    out = subprocess.run(
        [browser, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", f"--user-data-dir={tmp_path / 'profile'}",
         "--proxy-server=127.0.0.1:9", "--virtual-time-budget=3000", "--dump-dom", html_page.as_uri()],
        capture_output=True, text=True, timeout=120,
    )
    dom = out.stdout
    assert "<body" in dom, out.stderr[-2000:]
    body = dom.split("<body", 1)[1]
    visible = re.sub(r"<(script|style)\b.*?</\1>", "", body, flags=re.S)
    text = re.sub(r"<[^>]+>", "", visible)
    assert "$$" not in text and "\\frac" not in text and "\\text" not in text
    assert body.count("<math") >= 5  # the display formula and the inline ones
    assert "<mfrac>" in body and "h-swish" in text


# ------------------------------------------------------------------------------ unfinished runs, working folder


def _unfinished_copy(run: Path, dest: Path, planned: int) -> Path:
    """A stopped run made from a finished one: config.json (planning ``planned`` epochs), metrics.csv
    and train.log, no weights and no test.json, as a time limit leaves it."""
    dest.mkdir(parents=True)
    config = json.loads((run / "config.json").read_text())
    config["fields"]["epochs"] = planned
    (dest / "config.json").write_text(json.dumps(config))
    shutil.copy(run / "metrics.csv", dest / "metrics.csv")
    (dest / "train.log").write_text("stopped by a time limit\n")
    return dest


def test_unfinished_runs_are_labelled_with_their_curves_and_never_counted(tiny_runs, tmp_path):
    runs_dir = tmp_path / "runs"
    shutil.copytree(tiny_runs / "mnist_small", runs_dir / "mnist_small")
    done = len((tiny_runs / "cifar10_small_s1" / "metrics.csv").read_text().splitlines()) - 1
    _unfinished_copy(tiny_runs / "cifar10_small_s1", runs_dir / "cifar10_small_s1", planned=done + 4)
    label = f"unfinished (stopped at epoch {done + 1} of {done + 4})"
    assert runs.run_state(runs_dir / "cifar10_small_s1")["label"] == label
    results = reports.run_reports("quick", runs_dir=runs_dir, reports_dir=tmp_path / "out", overrides=FAST, log=lambda m: None,
                                  only=["03_train_mnist", "04_train_cifar10", "05_evaluate", "06_export"])
    by_name = {r.name: r for r in results}
    assert by_name["04_train_cifar10"].status == "ok"
    # 04: in the table, with its label instead of a test accuracy, and its curves drawn
    html = (tmp_path / "out" / "04_train_cifar10.html").read_text()
    row = next(c for c in map(cells, table_rows(html)) if c and c[0] == "cifar10_small_s1")
    assert label in row and f"{done} of {done + 4}" in row
    assert html.count(FIGURE) >= 3 and "Missing runs" in html  # curves, pair figure, seconds; s2 and large absent
    assert f"none: {label}" in html
    # never evaluated or exported: no page, and the index says why
    for name in ("05_evaluate-cifar10_small_s1", "06_export-cifar10_small_s1"):
        assert by_name[name].status == "missing" and label in by_name[name].message
        assert not (tmp_path / "out" / f"{name}.html").exists()
    index = (tmp_path / "out" / "index.html").read_text()
    row = next(c for c in map(cells, table_rows(index)) if c and c[0] == "cifar10_small_s1")
    assert label in row and not any(c.endswith("%") for c in row)  # no accuracy counted
    assert label in index_entry(index, "cifar10_small_s1 (not executed")


def _image_folder(root: Path) -> Path:
    """Two classes of eight 16x16 gray PNGs: the smallest image folder a run trains on."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    for label, level in (("dark", 40), ("light", 200)):
        (root / label).mkdir(parents=True)
        for i in range(8):
            Image.fromarray(np.clip(rng.normal(level, 20, (16, 16)), 0, 255).astype(np.uint8), "L").save(root / label / f"{i}.png")
    return root


def test_own_runs_appear_on_the_index_and_the_training_page(tiny_runs, tmp_path):
    # Issue 27: a run trained with overrides (the README's --lr 0.05 example), an image-folder run,
    # a stopped one and a damaged one, beside the named mnist_small: each is on the index, and the
    # training page draws the first three beside mnist_small with what they changed.
    import torch

    from mnv3 import own_runs
    from mnv3.train import main

    runs_dir = tmp_path / "runs" / "quick"
    shutil.copytree(tiny_runs / "mnist_small", runs_dir / "mnist_small")
    common = ["--out", str(tmp_path / "runs"), "--data-root", str(tmp_path / "data"), "--threads", "1", "--epochs", "2"]
    threads = torch.get_num_threads()
    try:
        own = main(["--experiment", "mnist_small", "--dataset", "synthetic", "--max-train-samples", "256", "--batch-size", "64",
                    "--lr", "0.05", *common])
        photos = main(["--experiment", "mnist_small", "--dataset", f"folder:{_image_folder(tmp_path / 'photos')}", "--batch-size", "4",
                       "--name", "photos", *common])
    finally:
        torch.set_num_threads(threads)
    assert own.parent == runs_dir and own.name.startswith("mnist_small-") and own.name.endswith("-lr0.05")
    stopped = _unfinished_copy(own, runs_dir / "stopped", planned=6)
    (runs_dir / "broken").mkdir()
    (runs_dir / "broken" / "config.json").write_text("{")
    assert own_runs.find_own_runs(runs_dir, ["cifar10_small_s1"])[0] == {}  # based on mnist_small: not on the CIFAR-10 page

    results = reports.run_reports("quick", runs_dir=runs_dir, reports_dir=tmp_path / "out", overrides=FAST, log=lambda m: None,
                                  only=["03_train_mnist"])
    assert [r.status for r in results] == ["ok"], [r.message for r in results]
    own_test = json.loads((own / "test.json").read_text())
    label = "unfinished (stopped at epoch 3 of 6)"  # two epochs of six

    index = (tmp_path / "out" / "index.html").read_text()
    rows = {c[0].split("based on")[0]: (c, r) for c, r in ((cells(r), r) for r in table_rows(index)) if c}  # name, then a <br>
    row, html_row = rows[own.name]
    assert "based on mnist_small:" in row[0] and "lr=0.05" in row[0] and "max_train_samples=256" in row[0]
    assert runs.format_accuracy(own_test["test_accuracy"]) in row and "href='03_train_mnist.html'" in html_row
    assert "dataset=folder:" in rows["photos"][0][0] and rows["photos"][0][1] == "folder:photos"
    assert label in rows["stopped"][0] and not any(c.endswith("%") for c in rows["stopped"][0])  # never counted
    assert "unreadable" in rows["broken"][0][1] and "broken/config.json" in rows["broken"][0][1]
    assert list(rows).index(own.name) > list(rows).index("mnist_small")  # below the experiments
    assert f"python -m mnv3.runs {paths.shown_path(runs_dir)}" in index

    html = (tmp_path / "out" / "03_train_mnist.html").read_text()
    table = html_table(html, "based on")
    assert table[own.name][1:3] == ["mnist_small", own_runs.describe_changes(json.loads((own / "config.json").read_text())["overrides"])]
    assert "lr=0.05" in table[own.name][2] and runs.format_accuracy(own_test["test_accuracy"]) in table[own.name]
    assert table["photos"][1] == "mnist_small" and "dataset=folder:" in table["photos"][2]
    assert label in table["stopped"]
    assert "3 run(s) of your own" in html and "`broken` is not drawn: unreadable" in html.replace("<code>", "`").replace("</code>", "`")
    assert html.count(FIGURE) >= MIN_FIGURES["03_train_mnist"] + 1  # the own runs' curves beside mnist_small
    for text in (index, html):
        assert not _absolute_mentions(text, tmp_path)  # the image folder's path is shown relative
    assert stopped.is_dir()


def test_shared_stopped_gpu_run_is_labelled(tmp_path):
    # The real stopped run of issue 12, when this machine has it: stopped during epoch 54 of 60.
    shared = REPO.parent / "shared" / "gpu-runs" / "h200-646b94e" / "cifar10_small_s1"
    if not (shared / "config.json").is_file():
        pytest.skip(f"the shared GPU runs are absent ({shared.parent.name} beside the checkout)")
    run = tmp_path / "cifar10_small_s1"
    shutil.copytree(shared, run)
    assert runs.run_state(run)["label"] == "unfinished (stopped at epoch 54 of 60)"
    row = runs.experiment_summary(run)
    assert row["status"] == "unfinished" and "test_accuracy" not in row and row["epochs_done"] == 53


@pytest.mark.parametrize("folder", [".", "notebooks"])
def test_notebook_path_parameters_resolve_against_the_repository(tiny_runs, tmp_path, folder):
    # `papermill notebooks/03_train_mnist.ipynb out.ipynb` from the root, or from notebooks/: the
    # same relative runs_dir finds the same runs.
    import papermill

    relative = os.path.relpath(tiny_runs, REPO)
    out = tmp_path / "out.ipynb"
    papermill.execute_notebook(str(REPO / "notebooks" / "03_train_mnist.ipynb"), str(out), kernel_name="python3",
                               parameters={"runs_dir": relative}, cwd=str(REPO / folder), progress_bar=False)
    text = out.read_text()
    assert "Missing runs" not in text and "image/png" in text  # the table and the curves of the run


# ------------------------------------------------------------------------------ the index


def test_index_links_every_report_and_summarises_every_experiment(report_run):
    html = page(report_run, "index")
    for r in report_run["results"]:
        assert (f"href='{r.html.name}'" in html) == (r.status != "missing")
    rows = {cells(r)[0]: cells(r) for r in table_rows(html) if cells(r)}
    header = rows["Experiment"]
    assert header[:11] == ["Experiment", "Dataset", "Model", "Image size", "Epochs", "Training images",
                           "Test accuracy (pipeline check)", "Parameters", "MACs", "Training time (s)", "Device"]
    for name in EXPERIMENTS:
        run_dir = report_run["runs"] / name
        test = json.loads((run_dir / "test.json").read_text())
        config = json.loads((run_dir / "config.json").read_text())
        model = model_from_config(config["model"])
        t = totals(summarize(model, config["image_size"]))
        row = dict(zip(header, rows[name]))
        assert row["Test accuracy (pipeline check)"] == runs.format_accuracy(test["test_accuracy"])
        assert row["Training images"] == f"{config['train_samples']:,}"
        assert row["Parameters"] == f"{t['params']:,}" == f"{test['parameters']:,}"
        assert row["MACs"] == f"{t['macs'] / 1e6:.2f}M"
        assert row["Training time (s)"] == f"{test['train_seconds']:.1f}"
        assert row["Device"] == test["device"]
        assert f"05_evaluate-{name}.html" in html
    # the quick profile says, beside the numbers, that they check the pipeline
    note = re.search(r"<p class='note'>(.*?)</p>", html, flags=re.S).group(1)
    assert "check the pipeline" in note and "not results" in note and "2 epoch(s)" in note
    assert html.index("class='note'") < html.index("<table class='summary'>")
    assert "compare them with the full profile" in html


def test_experiment_summary_reads_a_run(trained_run, tmp_path):
    row = runs.experiment_summary(trained_run)
    test = json.loads((trained_run / "test.json").read_text())
    assert row["status"] == "ok" and row["experiment"] == "mnist_small"
    assert row["test_accuracy"] == test["test_accuracy"] and row["parameters"] == test["parameters"]
    assert row["macs"] > 0 and row["train_seconds"] == pytest.approx(test["train_seconds"])
    assert runs.experiment_summary(tmp_path / "nothing") == {"experiment": "nothing", "status": "missing"}


# ------------------------------------------------------------------------------ missing runs, failures


def test_missing_runs_render_pages_naming_the_make_target(tmp_path):
    empty = tmp_path / "runs" / "quick"
    empty.mkdir(parents=True)
    only = ["03_train_mnist", "05_evaluate"]
    results = reports.run_reports("quick", runs_dir=empty, reports_dir=tmp_path / "out", only=only, log=lambda m: None)
    by_name = {r.name: r for r in results}
    assert by_name["03_train_mnist"].status == "ok"  # 03 runs, and says what is missing
    html = (tmp_path / "out" / "03_train_mnist.html").read_text()
    assert "Missing runs" in html and "make train PROFILE=quick" in html and "runs/quick/mnist_small/test.json" in html
    index = (tmp_path / "out" / "index.html").read_text()
    for experiment in EXPERIMENTS:  # 05 is not executed without its run, and leaves no page
        r = by_name[f"05_evaluate-{experiment}"]
        assert r.status == "missing" and not r.html.exists()
        entry = index_entry(index, f"{experiment} (not executed")
        assert "make train PROFILE=quick" in entry and f"{experiment}/test.json is missing" in entry
    assert "no run folder" in index and "make train PROFILE=quick" in index
    # pages not executed this time are listed as not generated yet
    assert "01_nonlinearities" not in {r.notebook.name for r in results}
    assert "Nonlinearities" in index and "not generated yet" in index


def test_a_failing_cell_fails_the_run_and_names_notebook_and_cell(tmp_path, monkeypatch, capsys):
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    params = nbformat.v4.new_code_cell("runs_dir = 'x'")
    params.metadata["tags"] = ["parameters"]
    nb.cells = [nbformat.v4.new_markdown_cell("# broken"), params, nbformat.v4.new_code_cell("x = 1"),
                nbformat.v4.new_code_cell("raise ValueError('boom')"), nbformat.v4.new_code_cell("y = 2")]
    source = tmp_path / "99_broken.ipynb"
    nbformat.write(nb, source)
    monkeypatch.setattr(reports.pages, "NOTEBOOKS", [reports.Notebook("99_broken", "Broken", source=source)])
    code = reports.main(["run", "--profile", "quick", "--runs-dir", str(tmp_path / "runs"), "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 1
    line = next(l for l in err.splitlines() if l.startswith("error: notebook"))
    assert str(source) in line
    assert re.search(r'cell 4, In \[\d+\] \("raise ValueError\(\'boom\'\)"\)', line), line
    assert "ValueError: boom" in line
    assert (tmp_path / "out" / "99_broken.html").is_file()  # the traceback is on the page
    assert "FAILED" in (tmp_path / "out" / "index.html").read_text()


def test_quick_profile_never_writes_into_the_full_reports(tmp_path):
    with pytest.raises(ValueError, match="must not write into"):
        reports.run_reports("quick", runs_dir=tmp_path, reports_dir=REPO / "reports" / "full")
    with pytest.raises(ValueError, match="must not write into"):
        reports.run_reports("quick", runs_dir=tmp_path, reports_dir=REPO / "reports" / "full" / "sub")
    assert reports.default_runs_dir("full") == REPO / "reports" / "full" / "runs"
    assert reports.default_runs_dir("quick") == REPO / "runs" / "quick"


# ------------------------------------------------------------------------------ notebooks and Makefile


@pytest.mark.parametrize("notebook", [nb.name for nb in reports.NOTEBOOKS])
def test_notebooks_are_stored_clean_with_a_parameters_cell(notebook):
    nb = nbformat.read(reports.notebook_by_name(notebook).path, as_version=4)
    nbformat.validate(nb)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(not c.outputs and c.execution_count is None for c in code), "clear the outputs before saving"
    tagged = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1
    assert nb.cells[0].cell_type == "markdown"
    assert nb.metadata["kernelspec"]["name"] == "python3"


def test_notebooks_declare_the_runners_parameters():
    import papermill

    for nb in reports.NOTEBOOKS:
        declared = set(papermill.inspect_notebook(str(nb.path)))
        if nb.name in ("03_train_mnist", "04_train_cifar10", "05_evaluate", "06_export"):
            assert {"runs_dir", "profile", "data_root", "data_mirror"} <= declared, nb.name
        if nb.per_experiment:
            assert "experiment" in declared
        for key in [*nb.parameters, *(k for p in nb.profile_parameters.values() for k in p)]:
            assert key in declared, f"{nb.name} does not declare {key}"
        if nb.shows_own_runs:  # a training page: its interactive default shows what the reports pass
            assert ast.literal_eval(papermill.inspect_notebook(str(nb.path))["experiments"]["default"]) == list(nb.experiments)
        # defaults are relative to the repository root (the notebooks resolve them against it)
        if "runs_dir" in declared:
            assert papermill.inspect_notebook(str(nb.path))["runs_dir"]["default"].strip("'\"") == "runs/quick"


def _make(*args: str) -> str:
    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    out = subprocess.run(["make", "-n", "-s", *args], cwd=REPO, capture_output=True, text=True, check=True)
    return out.stdout


def test_makefile_experiments_match_the_package():
    text = (REPO / "Makefile").read_text()
    line = next(l for l in text.splitlines() if l.startswith("EXPERIMENTS :="))
    assert tuple(line.split(":=", 1)[1].split()) == EXPERIMENTS


def test_make_targets_and_profiles(tmp_path):
    train = _make("train", f"TRAIN_OUT={tmp_path}")
    for name in EXPERIMENTS:
        assert f"-m mnv3.train --experiment {name} --profile quick --out {tmp_path}" in train
    quick = _make("reports", "MNV3_DATA_MIRROR=/some/mirror")
    assert "-m mnv3.reports run --profile quick --runs-dir runs/quick --out reports/quick" in quick
    assert "--data-mirror /some/mirror" in quick
    full = _make("reports", "PROFILE=full")
    assert "-m mnv3.reports run --profile full --runs-dir reports/full/runs --out reports/full" in full
    full_train = _make("train", "PROFILE=full", f"TRAIN_OUT={tmp_path}")
    assert f"--profile full --out {tmp_path}" in full_train
    data = _make("data", f"DATA_ROOT={tmp_path}", "MNV3_DATA_MIRROR=/m")
    for split in ("mnist-train", "mnist-test", "cifar10-train", "cifar10-test"):
        assert f"-m mnv3.data --root {tmp_path} --data-mirror /m {split}" in data
    # a finished run is not retrained
    done = tmp_path / "quick" / "mnist_small"
    done.mkdir(parents=True)
    (done / "test.json").write_text("{}")
    # an interrupted run is resumed
    (tmp_path / "quick" / "cifar10_small_s2").mkdir()
    (tmp_path / "quick" / "cifar10_small_s2" / "last.pt").write_bytes(b"")
    train = _make("train", f"TRAIN_OUT={tmp_path}")
    assert "--experiment mnist_small" not in train
    resumed = next(line for line in train.splitlines() if "--experiment cifar10_small_s2" in line)
    assert resumed.rstrip().endswith("--resume")
    assert "--resume" not in next(line for line in train.splitlines() if "--experiment cifar10_small_s1" in line)


def test_make_export_and_android_assets(tmp_path):
    assert "no finished run in" in _make("export", f"TRAIN_OUT={tmp_path}")
    quick = tmp_path / "quick"
    for name in ("mnist_small", "cifar10_small_s1", "cifar10_large_s1"):
        (quick / name).mkdir(parents=True)
        (quick / name / "test.json").write_text("{}")
    # cifar10_large_s1 was exported after it was trained: not redone
    (quick / "cifar10_large_s1" / "export").mkdir()
    (quick / "cifar10_large_s1" / "export" / "parity.json").write_text("{}")
    os.utime(quick / "cifar10_large_s1" / "test.json", (1e9, 1e9))
    out = _make("export", f"TRAIN_OUT={tmp_path}", "MNV3_DATA_MIRROR=/m")
    for name in ("mnist_small", "cifar10_small_s1"):
        assert f"-m mnv3.export {quick}/{name} --data-root data --data-mirror /m --parity-samples 128" in out
    assert "cifar10_small_s2" not in out and "cifar10_large_s1" not in out  # no run; exported already
    assert "--parity-samples" not in _make("export", f"TRAIN_OUT={tmp_path}", "EXPORT_ARGS=")
    assert "--latency-runs" not in out  # latency is timed by make bench, not during export
    # The app needs only the fp32 .pte, which android-assets copies or exports itself: no full
    # export (int8 calibration, ONNX, parity) runs first, not even for a run never exported.
    assets = _make("android-assets", f"TRAIN_OUT={tmp_path}")
    assert "-m mnv3.export android-assets" in assets and f"-m mnv3.export {quick}" not in assets
    assert f"-m mnv3.export android-assets --mnist {quick}/mnist_small --cifar {quick}/cifar10_small_s1 --data-root data" in assets
    custom = _make("android-assets", f"TRAIN_OUT={tmp_path}", "CUSTOM_RUN=runs/quick/photos")  # an optional third model
    assert f"--cifar {quick}/cifar10_small_s1 --custom runs/quick/photos --data-root data" in custom
    # all: data, train, reports (exporting the four quick runs takes longer than all of that budget)
    text = (REPO / "Makefile").read_text()
    recipe = re.split(r"\nall:[^\n]*\n", text, maxsplit=1)[1].split("\n\n", 1)[0]  # the line may carry its `## help`
    assert [line.split()[-1] for line in recipe.splitlines()] == ["data", "train", "reports"]


# ------------------------------------------------------------------------------ one notebook, as papermill


def _tiny_notebook(path: Path, *cells: str) -> Path:
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells = [nbformat.v4.new_code_cell("x = 1", metadata={"tags": ["parameters"]}), *map(nbformat.v4.new_code_cell, cells)]
    nbformat.write(nb, path)
    return path


def test_the_readmes_notebook_command_executes_without_the_tcp_warning(tmp_path):
    # The README's command for one notebook; papermill's own command line printed the kernel's
    # "running over TCP without encryption" warning, which it cannot pass the kernel the setting to silence.
    import sys

    readme = (REPO / "README.md").read_text()
    assert "python -m mnv3.reports execute 05_evaluate /tmp/05.ipynb -p experiment=cifar10_small_s2" in readme
    commands = [line for block in re.findall(r"```bash\n(.*?)```", readme, flags=re.S) for line in block.splitlines()]
    assert not [line for line in commands if re.match(r"(\S*/)?papermill ", line)]
    source = _tiny_notebook(tmp_path / "tiny.ipynb", "print('x is', x)")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    ours = subprocess.run([sys.executable, "-m", "mnv3.reports", "execute", str(source), str(tmp_path / "out.ipynb"), "-p", "x=5"],
                          capture_output=True, text=True, env=env, cwd=REPO)  # fmt: skip
    assert ours.returncode == 0, ours.stderr
    assert "without encryption" not in ours.stderr
    outputs = nbformat.read(tmp_path / "out.ipynb", as_version=4).cells[-1].outputs
    assert outputs[0]["text"] == "x is 5\n"
    # what papermill's command line prints (the control: the warning is there to be silenced)
    plain = subprocess.run([sys.executable, "-m", "papermill", str(source), str(tmp_path / "plain.ipynb"), "-p", "x", "5"],
                           capture_output=True, text=True, env=env, cwd=REPO)  # fmt: skip
    assert plain.returncode == 0 and "without encryption" in plain.stderr


def test_execute_names_a_failing_cell_and_unknown_parameters(tmp_path, capsys):
    from mnv3.reports.cli import main as reports_main

    source = _tiny_notebook(tmp_path / "fails.ipynb", "y = x + 1", "raise ValueError('no such run')")
    assert reports_main(["execute", str(source), str(tmp_path / "out.ipynb"), "-p", "z=1"]) == 2
    assert capsys.readouterr().err.strip().endswith("declares no parameter z; it declares: x.")
    assert reports_main(["execute", str(source), str(tmp_path / "out.ipynb")]) == 1
    err = capsys.readouterr().err
    assert "failed in cell 3" in err and "ValueError: no such run" in err and str(tmp_path / "out.ipynb") in err
    assert err.count("python -m mnv3.reports: error: ") == 1 and "Traceback" not in err  # beside papermill's progress bar


def test_execute_refuses_to_overwrite_a_source_notebook_or_write_a_non_notebook(tmp_path, capsys):
    from mnv3.reports.cli import main as reports_main

    source = _tiny_notebook(tmp_path / "tiny.ipynb", "print(x)")
    before = source.read_bytes()
    tracked = REPO / "notebooks" / "05_evaluate.ipynb"
    tracked_bytes = tracked.read_bytes()
    cases = [
        (["execute", str(source), str(tmp_path / "." / "tiny.ipynb")], "the source notebook"),
        (["execute", "05_evaluate", str(tracked), "-p", "experiment=x"], "the source notebook"),
        (["execute", str(source), str(REPO / "notebooks" / "scratch.ipynb")], "notebooks/"),
        (["execute", str(source), str(tmp_path / "out.txt")], "ending in .ipynb"),
    ]
    for argv, words in cases:
        assert reports_main(argv) == 2, argv
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and words in err and argv[2] in err, err
    assert source.read_bytes() == before and tracked.read_bytes() == tracked_bytes
    assert not (REPO / "notebooks" / "scratch.ipynb").exists() and not (tmp_path / "out.txt").exists()
