"""Evaluation: logits over a split, accuracy, and the classification metrics of the reports.

    python -m mnv3.evaluate runs/quick/mnist_small     # test metrics; writes RUN/classification_report.{txt,json}
    python -m mnv3.evaluate flip-tta runs/sweep-<UTC time>/full/00-baseline --device cuda

``flip-tta`` evaluates a run's best checkpoint on its own validation split, without and with flip
test-time augmentation, and writes ``flip_tta.json`` beside it: flip TTA changes evaluation only,
so the recipe sweep measures it on the baseline's weights instead of training a candidate for it.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch

from .arguments import int_at_least
from .augment import prepare_batch
from .checkpoint import CheckpointError, best_epoch_of, load_run
from .data import DataUnavailableError, DatasetInfo, train_val_split
from .files import write_json_atomic
from .imagefolder import is_folder_dataset, load_run_split, run_dataset_info
from .runs import FLIP_TTA_FILE, load_metrics

__all__ = [
    "predict_logits",
    "evaluate_run",
    "classification_metrics",
    "classification_report_frame",
    "classification_report_table",
    "confusion",
    "most_confused_pairs",
    "misclassified",
    "standout_pairs",
    "flip_tta_on_validation",
    "report_paths",
    "main",
]


@torch.inference_mode()
def predict_logits(
    forward: Callable[[torch.Tensor], torch.Tensor],
    images: torch.Tensor,
    info: DatasetInfo,
    *,
    image_size: int | None = None,
    batch_size: int = 500,
    normalize: bool = True,
) -> torch.Tensor:
    """Logits for uint8 ``images`` [N, C, H, W], batch by batch, as float32 on the CPU.

    ``normalize=False`` feeds raw pixels in [0, 1], for exported models that normalise inside.
    """
    outputs = []
    for start in range(0, len(images), batch_size):
        batch = images[start : start + batch_size]
        if normalize:
            x = prepare_batch(batch, info, train=False, image_size=image_size)
        else:
            x = batch.float() / 255.0
        outputs.append(torch.as_tensor(forward(x)).float().cpu())
    return torch.cat(outputs)


def evaluate_run(
    run_dir: str | Path,
    *,
    split: str = "test",
    which: str = "best",
    root: str | Path = "data",
    mirror: str | Path | None = None,
    max_samples: int | None = None,
    channels_last: bool = False,
) -> dict[str, Any]:
    """Load a run's model and return its logits, predictions, labels and accuracy on ``split``.

    The dataset is the run's (:func:`mnv3.imagefolder.run_dataset_info`, :func:`~mnv3.imagefolder.load_run_split`):
    a built-in one under ``root``, or an image folder's cache. ``channels_last`` runs the model in
    that memory format (as training does): about twice as fast on CPUs for these networks, with
    the same predictions up to float rounding. ``max_samples`` keeps the first N images (None: all);
    ValueError when it is below 1.
    """
    if max_samples is not None and max_samples < 1:
        raise ValueError(f"max_samples must be a positive number of images, got {max_samples} (None for all)")
    model, config = load_run(run_dir, which=which)
    info = run_dataset_info(config)
    images, labels = load_run_split(config, split, root=root, mirror=mirror)
    if max_samples is not None:
        images, labels = images[:max_samples], labels[:max_samples]
    forward: Callable[[torch.Tensor], torch.Tensor] = model
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
        forward = lambda x: model(x.contiguous(memory_format=torch.channels_last))  # noqa: E731
    logits = predict_logits(forward, images, info, image_size=config.get("image_size"))
    predictions = logits.argmax(1)
    return {
        "config": config,
        "info": info,
        "images": images,
        "labels": labels,
        "logits": logits,
        "predictions": predictions,
        "accuracy": (predictions == labels).float().mean().item(),
    }


# ----------------------------------------------------------------------------- metrics
#
# Labels and predictions may be torch tensors, numpy arrays or lists of class indices. Every
# function considers all classes 0..len(class_names)-1, also those that never occur in the sample,
# so results on a small subset line up with those on the whole test set.


def _as_index_array(values: Any, what: str) -> np.ndarray:
    if isinstance(values, torch.Tensor):
        values = values.detach().cpu().numpy()
    array = np.asarray(values)
    if array.ndim != 1:
        raise ValueError(f"{what} must be a 1-d sequence of class indices, got shape {array.shape}.")
    if array.size and not np.issubdtype(array.dtype, np.integer):
        raise ValueError(f"{what} must hold integer class indices, got dtype {array.dtype}.")
    return array.astype(np.int64)


def _check_pair(labels: Any, predictions: Any, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    y_true = _as_index_array(labels, "labels")
    y_pred = _as_index_array(predictions, "predictions")
    if y_true.shape != y_pred.shape:
        raise ValueError(f"labels ({y_true.size}) and predictions ({y_pred.size}) differ in length.")
    for name, array in (("labels", y_true), ("predictions", y_pred)):
        if array.size and not (0 <= array.min() and array.max() < num_classes):
            raise ValueError(f"{name} hold values outside 0..{num_classes - 1} (the {num_classes} classes).")
    return y_true, y_pred


def classification_metrics(labels: Any, predictions: Any, class_names: Sequence[str]) -> dict[str, Any]:
    """Accuracy and micro, macro and weighted precision, recall and F1 (scikit-learn's definitions).

    Returns ``{"accuracy": a, "samples": n, "micro": {...}, "macro": {...}, "weighted": {...}}``,
    each average a dict with ``precision``, ``recall`` and ``f1``. Micro averages pool every
    decision (for single-label classification all three equal the accuracy); macro averages weigh
    each class equally; weighted averages weigh each class by its support. A class never predicted
    has precision 0 (scikit-learn's ``zero_division=0``).
    """
    from sklearn.metrics import accuracy_score, precision_recall_fscore_support

    y_true, y_pred = _check_pair(labels, predictions, len(class_names))
    classes = list(range(len(class_names)))
    result: dict[str, Any] = {
        "accuracy": float(accuracy_score(y_true, y_pred)) if y_true.size else float("nan"),
        "samples": int(y_true.size),
    }
    for average in ("micro", "macro", "weighted"):
        precision, recall, f1, _ = precision_recall_fscore_support(
            y_true, y_pred, labels=classes, average=average, zero_division=0
        )
        result[average] = {"precision": float(precision), "recall": float(recall), "f1": float(f1)}
    return result


def classification_report_frame(labels: Any, predictions: Any, class_names: Sequence[str]):
    """scikit-learn's classification report as a pandas DataFrame.

    One row per class (indexed by class name), then "accuracy", "macro avg" and "weighted avg";
    columns ``precision``, ``recall``, ``f1-score`` and ``support``. As in scikit-learn's text
    report, the accuracy row has only its value (under ``f1-score``) and the total support.
    """
    import pandas as pd
    from sklearn.metrics import classification_report

    y_true, y_pred = _check_pair(labels, predictions, len(class_names))
    report = classification_report(
        y_true,
        y_pred,
        labels=list(range(len(class_names))),
        target_names=list(class_names),
        output_dict=True,
        zero_division=0,
    )
    rows: dict[str, dict[str, float]] = {}
    for name, values in report.items():
        if isinstance(values, dict):
            rows[name] = values
        else:  # "accuracy": a bare float
            rows[name] = {"precision": float("nan"), "recall": float("nan"), "f1-score": values, "support": float(y_true.size)}
    # scikit-learn reports "micro avg" instead of "accuracy" when some classes are missing from
    # both arrays; both are the accuracy then, so the frame always has an "accuracy" row.
    if "accuracy" not in rows and "micro avg" in rows:
        micro = rows.pop("micro avg")
        rows["accuracy"] = {"precision": float("nan"), "recall": float("nan"), "f1-score": micro["f1-score"], "support": micro["support"]}
    order = list(class_names) + ["accuracy", "macro avg", "weighted avg"]
    frame = pd.DataFrame.from_dict(rows, orient="index").reindex(order)
    frame = frame[["precision", "recall", "f1-score", "support"]]
    frame["support"] = frame["support"].round().astype("int64")
    return frame


def classification_report_table(frame, digits: int = 4):
    """:func:`classification_report_frame` as text, laid out as scikit-learn prints it.

    Numbers are rounded to ``digits`` decimals and supports are integers; the "accuracy" row has
    its value under ``f1-score`` and its support only, with the precision and recall cells empty
    (the frame holds NaN there, which a table would print as "NaN").
    """
    import pandas as pd

    def cell(value: Any, column: str) -> str:
        if pd.isna(value):
            return ""
        return f"{int(value)}" if column == "support" else f"{value:.{digits}f}"

    return pd.DataFrame({c: [cell(v, c) for v in frame[c]] for c in frame.columns}, index=frame.index)


def confusion(labels: Any, predictions: Any, num_classes: int) -> np.ndarray:
    """The confusion matrix as int64 ``[num_classes, num_classes]``: rows true class, columns predicted."""
    y_true, y_pred = _check_pair(labels, predictions, num_classes)
    return np.bincount(y_true * num_classes + y_pred, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def most_confused_pairs(cm: Any, class_names: Sequence[str], k: int = 5) -> list[dict[str, Any]]:
    """The ``k`` largest off-diagonal cells of a confusion matrix, largest first.

    Each item: ``{"true": name, "predicted": name, "count": n, "rate": n / images of the true class}``.
    Cells with a count of zero are left out; ties keep row-major order (true class, then predicted).
    """
    matrix = np.asarray(cm)
    n = len(class_names)
    if matrix.shape != (n, n):
        raise ValueError(f"the confusion matrix is {matrix.shape}, expected ({n}, {n}) for {n} class names.")
    row_totals = matrix.sum(axis=1)
    cells = [
        (int(matrix[t, p]), t, p) for t in range(n) for p in range(n) if t != p and matrix[t, p] > 0
    ]
    cells.sort(key=lambda c: -c[0])  # stable: ties stay in row-major order
    return [
        {"true": class_names[t], "predicted": class_names[p], "count": count, "rate": count / int(row_totals[t])}
        for count, t, p in cells[:k]
    ]


def misclassified(labels: Any, predictions: Any, *, logits: Any = None, limit: int | None = None) -> list[int]:
    """Indices of the samples whose prediction differs from the label.

    In dataset order, or, when ``logits`` are given, most confident mistakes first (by the softmax
    probability of the wrong prediction). ``limit`` keeps only the first ones.
    """
    y_true = _as_index_array(labels, "labels")
    y_pred = _as_index_array(predictions, "predictions")
    if y_true.shape != y_pred.shape:
        raise ValueError(f"labels ({y_true.size}) and predictions ({y_pred.size}) differ in length.")
    wrong = np.flatnonzero(y_true != y_pred)
    if logits is not None:
        probs = torch.as_tensor(logits).float().softmax(dim=1).numpy()
        confidence = probs[wrong, y_pred[wrong]]
        wrong = wrong[np.argsort(-confidence, kind="stable")]
    if limit is not None:
        wrong = wrong[:limit]
    return [int(i) for i in wrong]


# A pair of classes stands out when it holds at least this many mistakes and at least STANDOUT_SHARE
# times its even share (all mistakes spread evenly over the n(n-1) ordered pairs). Fewer than 3 is
# within what chance gives a classifier with a handful of mistakes.
STANDOUT_MIN_COUNT = 3
STANDOUT_SHARE = 2.0


def standout_pairs(cm: Any, class_names: Sequence[str], k: int = 10) -> tuple[list[dict[str, Any]], str]:
    """The confused pairs that stand out, largest first, and one Markdown sentence about them.

    ``cm``: the confusion matrix (rows true, columns predicted), as mnv3.evaluate.confusion gives.
    A pair stands out with at least :data:`STANDOUT_MIN_COUNT` mistakes and at least
    :data:`STANDOUT_SHARE` times the even share. At most ``k`` pairs, but a tie is never cut: all
    pairs tied with the k-th are kept. The rows are mnv3.evaluate.most_confused_pairs's. When none
    stands out the list is empty and the sentence says how the mistakes are spread.
    """
    import numpy as np

    from .evaluate import most_confused_pairs

    matrix = np.asarray(cm)
    n = len(class_names)
    mistakes = int(matrix.sum() - np.trace(matrix))
    if mistakes == 0:
        return [], "No test image was misclassified."
    pairs = most_confused_pairs(matrix, class_names, k=n * n)
    share = mistakes / (n * (n - 1))
    threshold = max(STANDOUT_MIN_COUNT, STANDOUT_SHARE * share)
    standing = [p for p in pairs if p["count"] >= threshold]
    if len(standing) > k:
        standing = [p for p in standing if p["count"] >= standing[k - 1]["count"]]
    rule = (f"a pair stands out with at least {STANDOUT_MIN_COUNT} mistakes and at least {STANDOUT_SHARE:g}x its even share "
            f"({share:.2f} of the {mistakes:,} mistakes over the {n * (n - 1)} ordered pairs)")
    if not standing:
        return [], (f"**No pair stands out**: the {mistakes:,} mistakes are spread over {len(pairs)} pairs, at most "
                    f"{pairs[0]['count']} in any one ({rule}).")
    covered = sum(p["count"] for p in standing)
    return standing, (f"{len(standing)} pair(s) stand out, holding {covered:,} of the {mistakes:,} mistakes ({rule}).")


# ----------------------------------------------------------------------------- flip TTA on a checkpoint (python -m mnv3.evaluate flip-tta)


def flip_tta_on_validation(run_dir: str | Path, *, device: str | None = None, root: str | Path = "data",
                           mirror: str | Path | None = None) -> dict[str, Any]:  # fmt: skip
    """Validation loss and accuracy of ``run_dir``'s best checkpoint (its EMA when it kept one),
    without and with flip TTA; written to ``run_dir/flip_tta.json`` and returned.

    Evaluated as training validates: the run's own validation split (``val_fraction``, split
    seed), batch size, memory format and autocast (bf16 on CUDA), through ``mnv3.train.evaluate``,
    so the value without flip equals the best epoch's ``val_acc`` in ``metrics.csv`` (for a run
    trained without ``--tta-flip``). Raises CheckpointError for a folder without a best checkpoint,
    DataUnavailableError when the dataset cannot be read, ValueError for an unusable ``device``.
    """
    from .step import resolve_device
    from .train import evaluate

    run_dir = Path(run_dir)
    torch_device = resolve_device(device)
    model, config = load_run(run_dir, which="best")
    fields = config["fields"]
    info = run_dataset_info(config)
    if is_folder_dataset(config["dataset"]):  # an image folder keeps its own validation split
        val_x, val_y = load_run_split(config, "val", root=root, mirror=mirror)
        val_idx = range(len(val_y))
    else:
        images, labels = load_run_split(config, "train", root=root, mirror=mirror)
        _, val_idx = train_val_split(len(images), fields["val_fraction"], seed=config["split_seed"])
        val_x, val_y = images[val_idx], labels[val_idx]
    val_x, val_y = val_x.to(torch_device), val_y.to(torch_device)
    model.to(torch_device)
    if fields["channels_last"]:
        model.to(memory_format=torch.channels_last)
    use_amp = torch_device.type == "cuda" and fields["amp"] != "off"
    dtype = torch.float16 if fields["amp"] == "fp16" else torch.bfloat16

    def autocast():
        return torch.autocast(device_type=torch_device.type, dtype=dtype, enabled=use_amp)

    args = (val_x, val_y, info, config["image_size"], 2 * (fields["batch_size"] // config.get("world_size", 1)), torch_device,
            fields["channels_last"], autocast)  # fmt: skip
    plain, flipped = evaluate(model, *args, tta_flip=False), evaluate(model, *args, tta_flip=True)
    metrics = load_metrics(run_dir)
    result = {
        "checkpoint": "best.pt", "epoch": int(best_epoch_of(metrics.to_dict("records"))) if metrics is not None else None,
        "val_loss": plain[0], "val_acc": plain[1], "val_loss_flip": flipped[0], "val_acc_flip": flipped[1],
        "val_samples": len(val_idx), "device": str(torch_device),
    }  # fmt: skip
    write_json_atomic(run_dir / FLIP_TTA_FILE, result)
    return result


def _flip_tta_main(argv: list[str]) -> int:
    tta = argparse.ArgumentParser(prog="python -m mnv3.evaluate flip-tta",
                                  description="A run's best checkpoint on its validation split, without and with flip TTA "
                                              "(writes RUN_DIR/flip_tta.json; the test set is not read).",
                                  epilog="example: python -m mnv3.evaluate flip-tta runs/quick/cifar10_small_s1 --device cpu")  # fmt: skip
    tta.add_argument("run_dir", help="a run folder with best.pt, e.g. runs/full/cifar10_small_s1")
    tta.add_argument("--device", default=None, help="cpu, cuda or cuda:N (default: cuda:0 when CUDA works, else cpu)")
    tta.add_argument("--data-root", default="data", help="where the decoded datasets are cached (default data)")
    tta.add_argument("--data-mirror", default=None, metavar="DIR", help="offline dataset mirror (default: $MNV3_DATA_MIRROR)")
    args = tta.parse_args(argv)
    try:
        result = flip_tta_on_validation(args.run_dir, device=args.device, root=args.data_root, mirror=args.data_mirror)
    except (CheckpointError, DataUnavailableError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"{args.run_dir}: validation accuracy {100 * result['val_acc']:.2f}% without flip, {100 * result['val_acc_flip']:.2f}% "
          f"with flip TTA (best.pt, epoch {result['epoch']}) -> {Path(args.run_dir) / FLIP_TTA_FILE}")  # fmt: skip
    return 0


# ----------------------------------------------------------------------------- command line


def report_paths(out: Path, split: str) -> tuple[Path, Path]:
    """The classification report files ``(txt, json)`` for ``split`` in folder ``out``.

    The test split's are ``classification_report.{txt,json}`` (what the notebooks and reports read);
    another split's carry its name, ``classification_report_<split>.{txt,json}``, so evaluating a
    run on its training split never overwrites its test report.
    """
    stem = "classification_report" if split == "test" else f"classification_report_{split}"
    return out / f"{stem}.txt", out / f"{stem}.json"


def main(argv: list[str] | None = None) -> int:
    """``python -m mnv3.evaluate RUN_DIR``: print a run's metrics on its test split and write its
    classification report (``RUN_DIR/classification_report.txt`` as scikit-learn prints it, and
    ``.json`` with the metrics; :func:`report_paths` names them for another split); ``python -m mnv3.evaluate flip-tta RUN_DIR``: see
    :func:`flip_tta_on_validation`. Returns the exit status (2 for an unusable run or dataset)."""
    import json

    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["flip-tta"]:
        return _flip_tta_main(argv[1:])

    from .files import write_text_atomic

    parser = argparse.ArgumentParser(
        prog="python -m mnv3.evaluate",
        description="Evaluate a trained run on its test split: accuracy, micro/macro/weighted precision, recall and F1, and "
                    "scikit-learn's classification report, written beside the run (or to --out).",
        epilog="examples:\n  python -m mnv3.evaluate runs/quick/mnist_small\n  python -m mnv3.evaluate runs/quick/photos --which last --json\n"
               "  python -m mnv3.evaluate flip-tta runs/quick/cifar10_small_s1   # validation accuracy without and with flip TTA",
        formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    parser.add_argument("run_dir", metavar="RUN_DIR", help="a run folder (config.json with best.pt, or a published final.safetensors)")
    parser.add_argument("--which", choices=("best", "last", "final"), default="best", help="checkpoint (default best)")
    parser.add_argument("--split", default="test", help="test (default), train, or val (image folders)")
    parser.add_argument("--data-root", default=None, metavar="DIR", help="dataset root and cache (default: the run's)")
    parser.add_argument("--data-mirror", default=None, metavar="DIR", help="offline dataset mirror (default: $MNV3_DATA_MIRROR)")
    parser.add_argument("--max-samples", type=int_at_least(1, hint="leave the option out for all"), default=None, metavar="N", help="only the first N images (default: all)")
    parser.add_argument("--out", default=None, metavar="DIR",
                        help="folder for the report (default RUN_DIR): classification_report.{txt,json} for the test split, "
                             "classification_report_<split>.{txt,json} for another split, so the test report is kept")  # fmt: skip
    parser.add_argument("--json", action="store_true", help="print the metrics as JSON")
    args = parser.parse_args(argv)
    out = Path(args.out or args.run_dir)
    if out.exists() and not out.is_dir():
        print(f"error: --out {out} is a file, not a folder; give a folder for the classification report (it is made if missing)",
              file=sys.stderr)  # fmt: skip
        return 2
    try:
        result = evaluate_run(args.run_dir, split=args.split, which=args.which, root=args.data_root, mirror=args.data_mirror,
                              max_samples=args.max_samples, channels_last=True)  # fmt: skip
    except (CheckpointError, DataUnavailableError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    names = list(result["info"].classes)
    metrics = classification_metrics(result["labels"], result["predictions"], names)
    table = classification_report_table(classification_report_frame(result["labels"], result["predictions"], names)).to_string()
    record = {"run": str(args.run_dir), "which": args.which, "split": args.split, "dataset": result["info"].name, "classes": names, **metrics}
    txt_path, json_path = report_paths(out, args.split)
    write_text_atomic(txt_path, table + "\n")
    write_json_atomic(json_path, record)
    if args.json:
        print(json.dumps(record, indent=2))
        return 0
    print(f"{args.run_dir} ({result['info'].name}, {args.which} weights), {args.split} split: accuracy {100 * metrics['accuracy']:.2f}% "
          f"on {metrics['samples']:,} images")
    for average in ("micro", "macro", "weighted"):
        m = metrics[average]
        print(f"  {average:8s} precision {m['precision']:.4f}  recall {m['recall']:.4f}  F1 {m['f1']:.4f}")
    print(table)
    print(f"-> {txt_path}, {json_path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
