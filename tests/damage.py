"""Damaged copies of a run folder, for the tests that check every command refuses them in one line
(issue 22): absurd model configs, a dataset name that is a path, an image size no model can take,
and weights of the wrong dtype, which used to be cast without a word."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch

# (what is damaged, the words the one-line error must hold)
DAMAGES = {
    "dataset-path": (dict(config=lambda c: c.update(dataset="../../etc")), "'dataset' is \"../../etc\""),
    "no-classes": (dict(config=lambda c: c["model"].update(num_classes=0)), "'model.num_classes' is 0"),
    "nan-width": (dict(config=lambda c: c["model"].update(width_mult=float("nan"))), "'model.width_mult' is NaN"),
    "unknown-key": (dict(config=lambda c: c["model"].update(depth=3)), "unknown field 'model.depth'"),
    "no-spec": (dict(config=lambda c: c["model"].pop("spec")), "missing field 'model.spec'"),
    "huge-image": (dict(config=lambda c: c.update(image_size=100000)), "'image_size' is 100000"),
    "int8-classifier": (dict(weights=lambda s: s.update({"classifier.3.weight": s["classifier.3.weight"].to(torch.int8)})),
                        "'classifier.3.weight' is int8"),
    "bool-conv": (dict(weights=lambda s: s.update({"features.0.0.weight": s["features.0.0.weight"] > 0})), "'features.0.0.weight' is bool"),
    "float-counter": (dict(weights=lambda s: s.update({"features.0.1.num_batches_tracked": torch.tensor(1.5e30)})),
                      "num_batches_tracked' is float32"),
}  # fmt: skip


def damaged_copy(run: Path, dest: Path, *, config=None, weights=None) -> Path:
    """A copy of ``run`` (without export/) at ``dest``, with ``config(dict)`` applied to config.json and
    ``weights(state_dict)`` to best.pt."""
    from mnv3.checkpoint import load_checkpoint, save_checkpoint

    shutil.copytree(run, dest, ignore=shutil.ignore_patterns("export"))
    if config:
        data = json.loads((dest / "config.json").read_text())
        config(data)
        (dest / "config.json").write_text(json.dumps(data))
    if weights:
        payload = load_checkpoint(dest / "best.pt")
        weights(payload["model"])
        save_checkpoint(dest / "best.pt", {k: v for k, v in payload.items() if k != "format"})
    return dest
