"""What the report pages compute and say, without a kernel: unfinished runs, like-with-like notes,
the confused pairs that stand out, one-epoch curves, formulas as MathML, the benchmarks page's
sources, the parity sentence, and the Makefile's help and setup variants."""
from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from mnv3 import evaluate, runs
from mnv3.mathml import latex_to_mathml, markdown_with_mathml

REPO = Path(__file__).resolve().parents[1]
NAMES = [str(i) for i in range(10)]
METRICS_HEADER = "epoch,lr,train_loss,train_acc,val_loss,val_acc,epoch_seconds,images_per_sec\n"
MODEL_CONFIG = json.loads((REPO / "reports/full/runs/cifar10_small_s2/config.json").read_text())["model"]  # CIFAR-10 Small


def fake_run(root: Path, name: str, *, epochs_done: int, epochs_planned: int, train_samples: int, finished: bool) -> Path:
    """A run folder as mnv3.train leaves it: config.json, metrics.csv, and test.json when finished."""
    run = root / name
    run.mkdir(parents=True)
    config = {"experiment": name, "dataset": "cifar10", "image_size": 32, "train_samples": train_samples, "model": MODEL_CONFIG,
              "fields": {"epochs": epochs_planned, "arch": "small", "width_mult": 1.0}}
    (run / "config.json").write_text(json.dumps(config))
    rows = [f"{e},0.1,{max(0.05, 2 - 0.1 * e)},{min(0.99, 0.3 + 0.05 * e)},{max(0.05, 1.9 - 0.1 * e)},{min(0.99, 0.35 + 0.05 * e)},10.0,100.0\n"
            for e in range(1, epochs_done + 1)]  # accuracies in [0, 1] and losses >= 0, as mnv3.records requires
    (run / "metrics.csv").write_text(METRICS_HEADER + "".join(rows))
    if finished:
        (run / "test.json").write_text(json.dumps({"test_accuracy": 0.5, "epochs": epochs_done}))
    return run


# ------------------------------------------------------------------------------ run states


def test_run_state_labels_stopped_finished_and_missing_runs(tmp_path):
    stopped = fake_run(tmp_path, "a", epochs_done=53, epochs_planned=60, train_samples=45000, finished=False)
    assert runs.run_state(stopped) == {"status": "unfinished", "epochs_done": 53, "epochs_planned": 60,
                                          "label": "unfinished (stopped at epoch 54 of 60)"}
    all_epochs = fake_run(tmp_path, "b", epochs_done=3, epochs_planned=3, train_samples=100, finished=False)
    assert runs.run_state(all_epochs)["label"] == "unfinished (all 3 epochs trained, no test evaluation)"
    done = fake_run(tmp_path, "c", epochs_done=3, epochs_planned=3, train_samples=100, finished=True)
    assert runs.run_state(done)["status"] == "ok"
    assert runs.run_state(tmp_path / "nothing")["status"] == "missing"


def test_evaluating_an_unfinished_run_says_so(tmp_path):
    fake_run(tmp_path, "cifar10_small_s1", epochs_done=2, epochs_planned=5, train_samples=300, finished=False)
    assert runs.require_run(tmp_path, "cifar10_small_s1", "full") == tmp_path / "cifar10_small_s1"
    with pytest.raises(runs.MissingRunError, match=r"is unfinished \(stopped at epoch 3 of 5\): it has no test.json"):
        runs.require_run(tmp_path, "cifar10_small_s1", "full", finished=True)


def test_runs_table_shows_the_label_instead_of_an_accuracy(tmp_path):
    stopped = fake_run(tmp_path, "cifar10_small_s1", epochs_done=2, epochs_planned=5, train_samples=300, finished=False)
    table = runs.runs_table({"cifar10_small_s1": stopped})
    row = table.loc["cifar10_small_s1"]
    assert row["test accuracy"] == "unfinished (stopped at epoch 3 of 5)" and row["epochs"] == "2 of 5"


# ------------------------------------------------------------------------------ ablations


def test_comparison_note_says_plainly_when_runs_differ(tmp_path):
    s2 = fake_run(tmp_path / "x", "s2", epochs_done=2, epochs_planned=2, train_samples=30000, finished=True)
    s1 = fake_run(tmp_path / "x", "s1", epochs_done=1, epochs_planned=1, train_samples=25000, finished=True)
    note = runs.comparison_note({"s2": s2, "s1": s1}, {"s2": "stride 2", "s1": "stride 1"})
    assert note.startswith("**These runs did not train alike**")
    assert "stride 2: 2 epoch(s) of 30,000 images" in note and "stride 1: 1 epoch(s) of 25,000 images" in note
    a = fake_run(tmp_path / "y", "a", epochs_done=2, epochs_planned=2, train_samples=500, finished=True)
    b = fake_run(tmp_path / "y", "b", epochs_done=2, epochs_planned=2, train_samples=500, finished=True)
    assert runs.comparison_note({"a": a, "b": b}) == "Like with like: every run here trained for 2 epoch(s) of 500 images."
    # the same budget so far, but one run stopped early: not like with like
    c = fake_run(tmp_path / "z", "c", epochs_done=2, epochs_planned=6, train_samples=500, finished=False)
    note = runs.comparison_note({"a": a, "c": c})
    assert "did not train alike" in note and "unfinished (stopped at epoch 3 of 6)" in note


# ------------------------------------------------------------------------------ confused pairs


def test_standout_pairs_says_when_no_pair_stands_out():
    # Ten ties of 2 (and two single mistakes): nothing stands out, and the page must say so.
    cm = np.diag([100] * 10)
    for t in range(10):
        cm[t, (t + 1) % 10] = 2
    cm[0, 5] = cm[3, 7] = 1
    pairs, note = evaluate.standout_pairs(cm, NAMES, 10)
    assert pairs == []
    assert note.startswith("**No pair stands out**") and "22 mistakes" in note and "12 pairs" in note and "at most 2" in note


def test_standout_pairs_lists_the_pairs_that_do_and_never_cuts_a_tie():
    cm = np.diag([100] * 10)
    cm[4, 9] = 12  # 4 read as 9: stands out
    cm[7, 1] = cm[3, 5] = 6  # a tie at the cut
    cm[2, 8] = 2
    pairs, note = evaluate.standout_pairs(cm, NAMES, 2)
    assert [(p["true"], p["predicted"], p["count"]) for p in pairs] == [("4", "9", 12), ("3", "5", 6), ("7", "1", 6)]
    assert note.startswith("3 pair(s) stand out, holding 24 of the 26 mistakes")
    assert evaluate.standout_pairs(np.diag([5] * 10), NAMES)[1] == "No test image was misclassified."


# ------------------------------------------------------------------------------ curves


def test_one_epoch_runs_are_drawn_as_marked_values_on_a_whole_epoch_axis(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    one = fake_run(tmp_path, "one", epochs_done=1, epochs_planned=1, train_samples=100, finished=True)
    fig = runs.plot_curves({"one": one})
    ax_acc, ax_loss = fig.axes
    lo, hi = ax_acc.get_xlim()
    assert (lo, hi) == (0.5, 1.5) and [t for t in ax_acc.get_xticks() if lo <= t <= hi] == [1.0]  # epoch 1, no 0.96-1.04
    texts = [t.get_text() for t in ax_acc.texts]
    assert texts == ["train 0.350", "val 0.400"]  # the values of epoch 1 in fake_run
    assert all(line.get_markersize() >= 9 for line in ax_acc.lines)
    assert any("(1 epoch)" in t.get_text() for t in ax_acc.get_legend().get_texts())
    plt.close(fig)
    # a stopped run keeps its curve, and its legend says it is unfinished
    stopped = fake_run(tmp_path, "stopped", epochs_done=3, epochs_planned=8, train_samples=100, finished=False)
    fig = runs.plot_curves({"stopped": stopped})
    assert any("unfinished (stopped at epoch 4 of 8)" in t.get_text() for t in fig.axes[0].get_legend().get_texts())
    assert not fig.axes[0].texts and fig.axes[0].get_xlim() == (0.5, 3.5)
    plt.close(fig)


# ------------------------------------------------------------------------------ formulas


def test_formulas_become_mathml_and_code_keeps_its_dollars():
    text = "Cost $x^2$ of `$HOME` and\n\n$$\\frac{a}{b}$$\n\n```\necho $PATH $x$\n```\nnot $ 5 or 3$."
    out = markdown_with_mathml(text)
    assert out.count("<math") == 2 and "<mfrac>" in out and 'display="block"' in out
    assert "`$HOME`" in out and "echo $PATH $x$" in out and "not $ 5 or 3$." in out
    assert "$$" not in out and "\\frac" not in out
    # characters Markdown would read as emphasis are entities inside the MathML
    assert "_" not in latex_to_mathml("a_{i} * b")
    assert markdown_with_mathml("no formulas here") == "no formulas here"


def test_notebook_formulas_all_convert():
    import nbformat

    for path in sorted((REPO / "notebooks").glob("*.ipynb")):
        for cell in nbformat.read(path, as_version=4).cells:
            if cell.cell_type == "markdown" and "$" in cell.source:
                out = markdown_with_mathml(cell.source)
                assert "$$" not in out, path.name


# ------------------------------------------------------------------------------ parity.md


def test_parity_sentence_words_the_sign(tmp_path):
    from mnv3.export import write_parity

    def sentence(drop: float) -> str:
        report = {"dataset": "mnist", "experiment": "mnist_small", "parity_samples": 8, "test_images": 100, "latency_runs": 3,
                  "threads": {"torch": 1, "executorch": 1, "onnxruntime": 1}, "rows": [],
                  "int8": {"accuracy_drop_points": drop, "within_budget": drop <= 1.0, "max_drop_points": 1.0}}
        write_parity(report, tmp_path)
        return next(line for line in (tmp_path / "parity.md").read_text().splitlines() if line.startswith("int8"))

    assert "0.04 points of test accuracy gained" in sentence(-0.04) and "lost " not in sentence(-0.04).split("(")[0]
    assert "1.31 points of test accuracy lost (OVER" in sentence(1.31)
    assert "no change in test accuracy" in sentence(0.0)


# ------------------------------------------------------------------------------ Makefile


def _make(*args: str) -> str:
    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    return subprocess.run(["make", *args], cwd=REPO, capture_output=True, text=True, check=True).stdout


def test_make_help_lists_every_target_in_one_line():
    lines = _make("-s", "help").splitlines()
    targets = [line.split()[1] for line in lines]
    assert targets == ["help", "setup", "test", "data", "train", "reports", "all", "export", "android-assets", "bench", "search", "gpu-mirror", "android-check"]
    assert all(len(line.split(None, 2)) == 3 for line in lines)  # each with its description


def test_make_setup_offers_a_cpu_only_torch(tmp_path):
    cpu = _make("-n", "setup", f"VENV={tmp_path / 'venv'}", "TORCH=cpu")
    assert "--index-url https://download.pytorch.org/whl/cpu torch==2.14.1+cpu torchvision==0.29.1+cpu" in cpu
    default = _make("-n", "setup", f"VENV={tmp_path / 'venv'}")
    assert "--index-url" not in default and "torch==2.14.1 torchvision==0.29.1" in default


# ------------------------------------------------------------------------------ damaged records (issue 22)


def committed_copies(runs_dir: Path) -> Path:
    """The four committed full-profile run folders (records only, no weights) under ``runs_dir``."""
    for run in (REPO / "reports" / "full" / "runs").iterdir():
        shutil.copytree(run, runs_dir / run.name, ignore=shutil.ignore_patterns("*.safetensors", "export"))
    return runs_dir


DAMAGED = {  # experiment -> (file, damaged content, what its row must name)
    "cifar10_small_s2": ("test.json", "[]", "test.json: the top level is []"),
    "cifar10_large_s1": ("metrics.csv", METRICS_HEADER + "1,0.1,garbage\n", "metrics.csv: line 2 does not hold one value per column"),
    "cifar10_small_s1": ("config.json", b"\x80\x04\x95\x00binary", "config.json: not UTF-8 text"),
}


def test_index_and_ablation_table_show_damaged_runs_as_unreadable_and_go_on(tmp_path, capsys):
    from mnv3.paths import shown_path
    from mnv3.reports.cli import main as reports_main

    runs_dir = committed_copies(tmp_path / "runs")
    for experiment, (name, content, _) in DAMAGED.items():
        path = runs_dir / experiment / name
        path.write_bytes(content) if isinstance(content, bytes) else path.write_text(content)
    assert reports_main(["index", "--profile", "full", "--runs-dir", str(runs_dir), "--out", str(tmp_path / "out")]) == 0
    index = (tmp_path / "out" / "index.html").read_text()
    for experiment, (_, _, words) in DAMAGED.items():
        row = index.split(f"<td class='text'>{experiment}</td>", 1)[1].split("</tr>", 1)[0]
        # the file as the pages show paths (relative to the repository), and what is wrong with it
        assert f"unreadable: {shown_path(runs_dir / experiment / words.split(':')[0])}: " in row and words.split(": ", 1)[1] in row, row
    assert "99.46%" in index.split("<td class='text'>mnist_small</td>", 1)[1].split("</tr>", 1)[0]  # the good run is shown
    # the training pages draw the readable runs and name the damaged ones
    present, missing = runs.find_runs(runs_dir, ["mnist_small", *DAMAGED])
    note = runs.missing_runs_markdown(missing, "full", runs_dir)
    assert list(present) == ["mnist_small"] and note.count("unreadable: ") == 3 and "test.json: the top level is []" in note
    # a string accuracy is damage too
    (runs_dir / "cifar10_small_s2" / "test.json").write_text(json.dumps({"test_accuracy": "72.12%"}))
    assert runs.experiment_summary(runs_dir / "cifar10_small_s2")["label"].endswith("""field 'test_accuracy' is "72.12%"; allowed: a finite number in [0, 1].""")
    # python -m mnv3.runs: one row per run, the damaged ones named, the others with their numbers
    runs.main([str(runs_dir)])
    table = capsys.readouterr().out
    assert "| mnist_small | mnist_small | the profile's own | 99.28% (19) | 20 of 20 |" in table
    for experiment in ("cifar10_large_s1", "cifar10_small_s1"):
        line = next(line for line in table.splitlines() if line.startswith(f"| {experiment} |"))
        assert "unreadable: " in line and DAMAGED[experiment][2].split(": ", 1)[1] in line, line


def test_index_into_a_read_only_folder_is_one_line(tmp_path, read_only_dir, capsys):
    from mnv3.reports.cli import main as reports_main

    assert reports_main(["index", "--profile", "full", "--runs-dir", str(tmp_path / "runs"), "--out", str(read_only_dir)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"python -m mnv3.reports: error: {read_only_dir}") and "Traceback" not in err and len(err.splitlines()) == 1


def test_the_quick_index_table_fits_a_1300_pixel_window(tmp_path, headless_browser):
    # Its twelve columns were wider than a 1300-pixel window, which cut off the Reports column.
    from mnv3.reports import pages
    from mnv3.reports.index import write_index
    from mnv3.reports.runner import make_context

    runs_dir = committed_copies(tmp_path / "runs" / "quick")
    for config in runs_dir.glob("*/config.json"):  # the quick profile's widest device label
        config.write_text(config.read_text().replace('"NVIDIA H200"', '"cpu (x86_64, 2 threads)"'))
    ctx = make_context("quick", runs_dir=runs_dir, reports_dir=tmp_path / "out")
    for nb in pages.NOTEBOOKS:  # every page present, so every row links its reports
        for experiment in nb.executions():
            (ctx.reports_dir / f"{nb.report_name(experiment)}.html").write_text("x")
    page = write_index(ctx)
    probe = ("<script>const t = document.querySelector('table.summary').getBoundingClientRect();"
             "document.body.setAttribute('data-fits', t.right <= document.documentElement.clientWidth ? 'yes' : 'no:' + t.right);</script>")
    page.write_text(page.read_text().replace("</body>", probe + "</body>"))
    out = subprocess.run([headless_browser, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--window-size=1300,1000",
                          f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=2000", "--dump-dom", page.as_uri()],
                         capture_output=True, text=True, timeout=120)  # fmt: skip
    assert 'data-fits="yes"' in out.stdout, (out.stdout[-300:], out.stderr[-1000:])


def test_a_page_whose_input_record_is_damaged_is_not_executed_and_says_why(tmp_path):
    from mnv3.reports import pages
    from mnv3.reports.runner import execute_report, make_context

    run = shutil.copytree(REPO / "reports" / "full" / "runs" / "mnist_small", tmp_path / "runs" / "mnist_small",
                          ignore=shutil.ignore_patterns("*.safetensors"))  # fmt: skip
    (run / "export" / "parity.json").write_text(json.dumps({"dataset": "mnist", "rows": []}))
    ctx = make_context("full", runs_dir=tmp_path / "runs", reports_dir=tmp_path / "out")
    result = execute_report(pages.notebook_by_name("06_export"), ctx, "mnist_small", log=lambda m: None)
    assert result.status == "missing" and "export/parity.json` is unreadable: missing field 'parity_samples'" in result.message
