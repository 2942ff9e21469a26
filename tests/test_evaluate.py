"""The classification metrics of mnv3.evaluate, on cases small enough to work out by hand."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from mnv3.evaluate import (
    classification_metrics,
    classification_report_frame,
    classification_report_table,
    confusion,
    evaluate_run,
    misclassified,
    most_confused_pairs,
)

NAMES = ["cat", "dog", "fox"]
# 8 samples. Per class (true -> predicted):
#   cat: 3 images, predicted cat, cat, dog          -> TP 2, FN 1
#   dog: 3 images, predicted dog, cat, dog          -> TP 2, FN 1
#   fox: 2 images, predicted fox, dog               -> TP 1, FN 1
# Predicted counts: cat 3 (TP 2), dog 4 (TP 2), fox 1 (TP 1).
LABELS = [0, 0, 0, 1, 1, 1, 2, 2]
PREDS = [0, 0, 1, 1, 0, 1, 2, 1]


def f1(p, r):
    return 2 * p * r / (p + r)


# Per class precision, recall and F1, by hand.
P = {"cat": 2 / 3, "dog": 2 / 4, "fox": 1 / 1}
R = {"cat": 2 / 3, "dog": 2 / 3, "fox": 1 / 2}
F = {c: f1(P[c], R[c]) for c in NAMES}
SUPPORT = {"cat": 3, "dog": 3, "fox": 2}


def test_confusion_matrix_by_hand():
    cm = confusion(LABELS, PREDS, 3)
    assert cm.tolist() == [[2, 1, 0], [1, 2, 0], [0, 1, 1]]
    assert cm.dtype == np.int64
    # tensors and numpy arrays are accepted as well as lists
    assert confusion(torch.tensor(LABELS), np.array(PREDS), 3).tolist() == cm.tolist()


def test_classification_metrics_by_hand():
    m = classification_metrics(torch.tensor(LABELS), torch.tensor(PREDS), NAMES)
    assert m["samples"] == 8
    assert m["accuracy"] == pytest.approx(5 / 8)
    # single-label: micro precision = micro recall = micro F1 = accuracy
    for key in ("precision", "recall", "f1"):
        assert m["micro"][key] == pytest.approx(5 / 8)
    assert m["macro"]["precision"] == pytest.approx(sum(P.values()) / 3)
    assert m["macro"]["recall"] == pytest.approx(sum(R.values()) / 3)
    assert m["macro"]["f1"] == pytest.approx(sum(F.values()) / 3)
    total = sum(SUPPORT.values())
    assert m["weighted"]["precision"] == pytest.approx(sum(P[c] * SUPPORT[c] for c in NAMES) / total)
    assert m["weighted"]["recall"] == pytest.approx(sum(R[c] * SUPPORT[c] for c in NAMES) / total)
    assert m["weighted"]["f1"] == pytest.approx(sum(F[c] * SUPPORT[c] for c in NAMES) / total)


def test_metrics_count_classes_absent_from_the_sample():
    # Class 2 never occurs and is never predicted: macro averages still divide by 3 classes.
    m = classification_metrics([0, 1], [0, 1], NAMES)
    assert m["accuracy"] == 1.0
    assert m["macro"]["recall"] == pytest.approx(2 / 3)
    assert m["weighted"]["recall"] == pytest.approx(1.0)


def test_classification_report_frame_rows_and_values():
    frame = classification_report_frame(LABELS, PREDS, NAMES)
    assert list(frame.index) == ["cat", "dog", "fox", "accuracy", "macro avg", "weighted avg"]
    assert list(frame.columns) == ["precision", "recall", "f1-score", "support"]
    for c in NAMES:
        assert frame.loc[c, "precision"] == pytest.approx(P[c])
        assert frame.loc[c, "recall"] == pytest.approx(R[c])
        assert frame.loc[c, "f1-score"] == pytest.approx(F[c])
        assert frame.loc[c, "support"] == SUPPORT[c]
    assert frame.loc["accuracy", "f1-score"] == pytest.approx(5 / 8)
    assert math.isnan(frame.loc["accuracy", "precision"])
    assert frame.loc["accuracy", "support"] == 8
    assert frame.loc["macro avg", "f1-score"] == pytest.approx(sum(F.values()) / 3)
    assert frame.loc["weighted avg", "support"] == 8


def test_classification_report_frame_with_a_missing_class_keeps_an_accuracy_row():
    frame = classification_report_frame([0, 0, 1], [0, 1, 1], NAMES)
    assert list(frame.index) == ["cat", "dog", "fox", "accuracy", "macro avg", "weighted avg"]
    assert frame.loc["accuracy", "f1-score"] == pytest.approx(2 / 3)
    assert frame.loc["fox", "support"] == 0


def test_classification_report_table_prints_accuracy_as_scikit_learn_does():
    from sklearn.metrics import classification_report

    table = classification_report_table(classification_report_frame(LABELS, PREDS, NAMES), digits=2)
    assert list(table.loc["accuracy"]) == ["", "", "0.62", "8"]  # 5/8 under f1-score, then the support
    assert list(table.loc["cat"]) == ["0.67", "0.67", "0.67", "3"]
    # the same numbers as scikit-learn's own text report, row by row
    text = classification_report(LABELS, PREDS, target_names=NAMES, digits=2, zero_division=0)
    for name in ["cat", "dog", "fox", "accuracy", "macro avg", "weighted avg"]:
        printed = next(line for line in text.splitlines() if line.strip().startswith(name)).split()[-4 if name != "accuracy" else -2:]
        assert [c for c in table.loc[name] if c] == printed, name


def test_most_confused_pairs_by_hand():
    cm = np.array([[5, 3, 1], [0, 7, 3], [2, 0, 4]])
    pairs = most_confused_pairs(cm, NAMES, k=3)
    # off-diagonal counts: cat->dog 3, cat->fox 1, dog->fox 3, fox->cat 2; ties in row-major order
    assert [(p["true"], p["predicted"], p["count"]) for p in pairs] == [
        ("cat", "dog", 3),
        ("dog", "fox", 3),
        ("fox", "cat", 2),
    ]
    assert pairs[0]["rate"] == pytest.approx(3 / 9)
    assert pairs[1]["rate"] == pytest.approx(3 / 10)
    # zero cells are never listed, however large k is
    assert len(most_confused_pairs(cm, NAMES, k=100)) == 4
    assert most_confused_pairs(np.eye(3, dtype=int), NAMES) == []
    with pytest.raises(ValueError, match="expected \\(3, 3\\)"):
        most_confused_pairs(np.zeros((2, 2)), NAMES)


def test_misclassified_order_and_limit():
    assert misclassified(LABELS, PREDS) == [2, 4, 7]
    assert misclassified(LABELS, PREDS, limit=2) == [2, 4]
    # with logits: the most confident mistake first
    logits = torch.zeros(8, 3)
    logits[2, 1] = 1.0  # wrong, moderately confident
    logits[4, 0] = 5.0  # wrong, very confident
    logits[7, 1] = 0.1  # wrong, barely
    assert misclassified(LABELS, PREDS, logits=logits) == [4, 2, 7]
    assert misclassified([1, 2], [1, 2]) == []


def test_invalid_inputs_are_reported():
    with pytest.raises(ValueError, match="differ in length"):
        confusion([0, 1], [0], 3)
    with pytest.raises(ValueError, match="outside 0..2"):
        classification_metrics([0, 3], [0, 1], NAMES)
    with pytest.raises(ValueError, match="integer class indices"):
        confusion([0.5], [0.0], 3)


def test_evaluate_run_metrics_agree_with_the_run(trained_run, tmp_path):
    """On a real (tiny) run: the metrics of its predictions match evaluate_run's accuracy."""
    result = evaluate_run(trained_run, root=tmp_path, max_samples=200)
    names = result["info"].classes
    m = classification_metrics(result["labels"], result["predictions"], names)
    assert m["accuracy"] == pytest.approx(result["accuracy"])
    cm = confusion(result["labels"], result["predictions"], len(names))
    assert cm.sum() == 200 and np.trace(cm) == round(result["accuracy"] * 200)
    assert len(misclassified(result["labels"], result["predictions"])) == 200 - np.trace(cm)


# ----------------------------------------------------------------------------- the command line


@pytest.fixture(scope="module")
def small_run(tmp_path_factory):
    """One tiny mnist_small run on synthetic data (a few seconds), with its data under the same folder."""
    from mnv3.train import main as train_main

    root = tmp_path_factory.mktemp("eval_cli")
    threads = torch.get_num_threads()
    try:
        train_main(["--experiment", "mnist_small", "--name", "r", "--dataset", "synthetic", "--out", str(root), "--data-root",
                    str(root / "data"), "--threads", "1", "--epochs", "1", "--max-train-samples", "64", "--batch-size", "32"])  # fmt: skip
    finally:
        torch.set_num_threads(threads)
    return root / "quick" / "r", root / "data"


@pytest.mark.parametrize("value", ["-1", "0", "many"])
def test_max_samples_must_be_positive(small_run, value, capsys):
    from mnv3.evaluate import main

    run, data = small_run
    with pytest.raises(SystemExit) as exit_:
        main([str(run), "--data-root", str(data), "--max-samples", value])
    assert exit_.value.code == 2
    assert "--max-samples" in capsys.readouterr().err and not (run / "classification_report.json").exists()
    with pytest.raises(ValueError, match="max_samples"):
        evaluate_run(run, root=data, max_samples=-1)


def test_another_split_keeps_the_test_report(small_run, capsys):
    import json

    from mnv3.evaluate import main

    run, data = small_run
    assert main([str(run), "--data-root", str(data), "--max-samples", "16"]) == 0
    assert main([str(run), "--data-root", str(data), "--max-samples", "8", "--split", "train"]) == 0
    assert json.loads((run / "classification_report.json").read_text())["split"] == "test"
    train = json.loads((run / "classification_report_train.json").read_text())
    assert train["split"] == "train" and train["samples"] == 8
    assert (run / "classification_report_train.txt").is_file()


def test_out_that_is_a_file_is_one_line(small_run, tmp_path, capsys):
    from mnv3.evaluate import main

    run, data = small_run
    afile = tmp_path / "afile"
    afile.write_text("x")
    assert main([str(run), "--data-root", str(data), "--out", str(afile)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and str(afile) in err and "folder" in err and afile.read_text() == "x"
