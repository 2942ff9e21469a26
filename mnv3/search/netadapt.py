"""NetAdapt over a spec: the search loop of Howard et al. 2019, section 4.2.

From a trained seed run, step by step until the measured latency reaches the target:

1. proposals (:func:`make_proposals`): for each block with an expansion conv, the largest
   narrower ``exp_size`` (kind E), and for each residual bottleneck group the largest narrower
   ``out`` (kind B), that the latency model predicts to cut at least delta milliseconds;
2. each proposal inherits the current network's weights (:func:`~mnv3.search.surgery.inherit_weights`)
   and gets its proxy accuracy (:func:`~mnv3.search.proxy.proxy_accuracy`);
3. the proposal with the best ``(accuracy - current accuracy) / predicted latency cut`` wins
   (the paper's ratio of accuracy change to latency change); its whole-model latency is measured
   on ExecuTorch, and the latency model is refitted with it.

Every proposal and step is one line of ``search.jsonl`` in the output folder; each step's winner
is saved as ``steps/step-NN.safetensors``, so an interrupted search resumes where it stopped. At
the target it writes ``searched.json``, a spec file whose ``notes`` say where it came from, which
``python -m mnv3.train --arch`` trains like any other.
"""
from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch

from ..checkpoint import load_run, load_weights, model_with_weights, save_weights
from ..imagefolder import run_dataset_info
from ..environment import cpu_model, git_commit
from ..files import write_json_atomic
from ..paths import shown_path
from ..spec import ModelSpec, SpecError
from .latency import LatencyModel, LatencyStore, Setting, random_specs
from .proxy import ProxyConfig, evaluate_accuracy, load_proxy_data, proxy_accuracy
from .surgery import CHANNEL_STEP, MIN_CHANNELS, Proposal, apply_proposal, bottleneck_groups, inherit_weights, structure

__all__ = ["SearchConfig", "SearchError", "make_proposals", "run_search", "read_log"]



class SearchError(RuntimeError):
    """A seed run, target or output folder the search cannot use; the message says what to do."""


@dataclass(frozen=True)
class SearchConfig:
    """The search's settings: the target (``target_ms``, or ``target_fraction`` of the seed's
    measured latency), the latency cut per step (``delta_fraction`` of the seed's latency), the
    proxy's work per proposal, CPU threads for training (the latency is always timed with one
    runtime thread), the seed of the step batches, a cap on the steps, and how many random specs
    of the seed's structure are measured first when the latency store holds fewer (the model
    needs data before the first step; ``python -m mnv3.search latency`` measures more)."""

    target_ms: float | None = None
    target_fraction: float | None = 0.75
    delta_fraction: float = 0.05
    proxy: ProxyConfig = ProxyConfig()
    threads: int = 1
    seed: int = 0
    max_steps: int = 40
    fit_specs: int = 16

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def make_proposals(spec: ModelSpec, model: LatencyModel, delta_ms: float, drop_first_strides: int) -> list[tuple[Proposal, ModelSpec, float]]:
    """The step's proposals: (proposal, child spec, predicted latency in ms), one per block with an
    expansion conv (E) and one per bottleneck group (B), each the widest child whose predicted
    latency is at least ``delta_ms`` below ``spec``'s. A layer that cannot cut that much (even
    at :data:`~mnv3.search.surgery.MIN_CHANNELS`) proposes nothing."""
    current = model.predict(spec)
    candidates = [("E", (i,), b.exp_size) for i, b in enumerate(spec.blocks) if structure(spec, drop_first_strides).expand[i]]
    candidates += [("B", group, spec.blocks[group[0]].out) for group in bottleneck_groups(spec, drop_first_strides)]
    proposals = []
    for kind, blocks, width in candidates:
        for channels in range(width - CHANNEL_STEP, MIN_CHANNELS - 1, -CHANNEL_STEP):
            proposal = Proposal(kind, blocks, channels)
            try:
                child = apply_proposal(spec, proposal, drop_first_strides=drop_first_strides)
            except SpecError:  # this width would change the structure; a narrower one may not
                continue
            predicted = model.predict(child)
            if current - predicted >= delta_ms:
                proposals.append((proposal, child, predicted))
                break
    return proposals


def read_log(path: str | Path) -> list[dict[str, Any]]:
    """``search.jsonl`` as a list of records ({"type": "start" | "proposal" | "step" | "done", ...}).
    A last line cut short by a kill is dropped."""
    path = Path(path)
    if not path.is_file():
        return []
    records = []
    lines = path.read_text().splitlines()
    for n, line in enumerate(lines):
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            if n == len(lines) - 1:
                break
            raise SearchError(f"{path}: line {n + 1} is not JSON; the log is damaged. Delete the folder to search afresh.") from None
    return records


# Settings that may change between a search and its resumption: they decide when to stop and how
# much to measure up front, not what a step computes.
RESUMABLE_CHANGES = ("max_steps", "fit_specs")


def _identity(value: Any) -> Any:
    return {k: v for k, v in value.items() if k not in RESUMABLE_CHANGES} if isinstance(value, dict) else value


def _append(path: Path, record: dict[str, Any]) -> None:
    with open(path, "a") as f:
        f.write(json.dumps(record) + "\n")
        f.flush()


def run_search(run_dir: str | Path, out_dir: str | Path, cfg: SearchConfig, *, data_root: str | Path = "data",
               data_mirror: str | Path | None = None, log: Callable[[str], None] = print) -> Path:  # fmt: skip
    """Search from the seed ``run_dir`` into ``out_dir``; returns the path of ``searched.json``.

    Resumes from ``out_dir/search.jsonl`` when it exists (and was started with the same seed run
    and settings). Raises SearchError for a seed it cannot use (not width 1.0, unfinished), a
    target at or above the seed's latency, or a log of another search; CheckpointError for
    unreadable weights.
    """
    from tqdm.auto import tqdm

    run_dir, out_dir = Path(run_dir), Path(out_dir)
    if (run_dir / "config.json").is_file() and not (run_dir / "test.json").is_file():
        raise SearchError(f"{run_dir} is unfinished (no test.json): the search starts from a finished run's best weights. "
                          "Finish it first (python -m mnv3.train ... --resume), or search another run")
    torch.set_num_threads(cfg.threads)
    seed_model, config = load_run(run_dir)
    if seed_model.config["width_mult"] != 1.0:
        raise SearchError(f"{run_dir}: the seed has width {seed_model.config['width_mult']}; the search narrows a spec's own "
                          "layers at width 1.0. Train the seed with --width-mult 1.0 (a spec file can hold narrower layers).")
    drop = seed_model.config["drop_first_strides"]
    info = run_dataset_info(config)
    setting = Setting.from_run(config, info)
    out_dir.mkdir(parents=True, exist_ok=True)
    log_path = out_dir / "search.jsonl"
    records = read_log(log_path)
    header = {"type": "start", "run_dir": shown_path(run_dir), "config": cfg.to_dict(), "setting": setting.to_dict()}
    if records and any(_identity(records[0].get(k)) != _identity(header[k]) for k in ("run_dir", "config", "setting")):
        raise SearchError(f"{log_path} is the log of another search (other seed run or settings). Use another --out, "
                          "or delete that folder to start afresh.")

    store = LatencyStore(out_dir / "latency", setting, seed_model.spec, log=log)
    seed_ms = store.latency_ms(seed_model.spec)
    if seed_ms is None or len(store.data["measured"]) < cfg.fit_specs:
        log(f"measuring the seed and {cfg.fit_specs} random specs of its structure for the latency model (cached after the first time)")
        fits = {f"fit{i}": s for i, s in enumerate(random_specs(seed_model.spec, cfg.fit_specs, seed=cfg.seed, drop_first_strides=drop))}
        store.measure({"seed": seed_model.spec, **fits}, why="fit")
        seed_ms = store.latency_ms(seed_model.spec)
    target_ms = cfg.target_ms if cfg.target_ms is not None else cfg.target_fraction * seed_ms
    if target_ms >= seed_ms:
        raise SearchError(f"the target {target_ms:.3f} ms is not below the seed's measured latency {seed_ms:.3f} ms; "
                          "give a smaller --target (e.g. 75% of the seed's)")
    delta_ms = cfg.delta_fraction * seed_ms
    if not records:
        _append(log_path, {**header, "seed_ms": seed_ms, "target_ms": target_ms, "delta_ms": delta_ms, "cpu": cpu_model(),
                           "git_commit": git_commit(), "time": time.strftime("%Y-%m-%d %H:%M:%S")})  # fmt: skip
    elif records[-1]["type"] == "done" and (out_dir / records[-1]["spec_file"]).is_file():
        log(f"{shown_path(log_path)}: this search is done; its spec is {shown_path(out_dir / records[-1]['spec_file'])}")
        return out_dir / records[-1]["spec_file"]
    else:
        log(f"resuming {shown_path(log_path)}")

    data = load_proxy_data(config, val_images=cfg.proxy.val_images, data_root=data_root, data_mirror=data_mirror)
    steps = [r for r in records if r["type"] == "step"]
    if steps:
        last = steps[-1]
        payload = load_weights(out_dir / "steps" / f"step-{last['step']:02d}.safetensors")
        model = model_with_weights(payload["model_config"], payload["model"], where=str(out_dir / "steps"))
        current_acc, current_ms = last["proxy_accuracy"], last["measured_ms"]
    else:
        model, current_ms = seed_model, seed_ms
        current_acc = evaluate_accuracy(model, data)
    spec = model.spec
    latency = store.model()
    step = len(steps)
    while current_ms > target_ms and step < cfg.max_steps:
        step += 1
        start = time.perf_counter()
        proposals = make_proposals(spec, latency, delta_ms, drop)
        if not proposals:
            raise SearchError(f"step {step}: no layer can cut {delta_ms:.3f} ms any more (latency {current_ms:.3f} ms, "
                              f"target {target_ms:.3f} ms); use a smaller --delta or a larger --target")
        done = {(tuple(r["blocks"]), r["kind"]): r for r in records if r["type"] == "proposal" and r["step"] == step}
        current_pred = latency.predict(spec)
        best = None
        for proposal, child_spec, predicted in tqdm(proposals, desc=f"step {step}: {len(proposals)} proposals", leave=False, disable=None):
            row = done.get((proposal.blocks, proposal.kind))
            child = None
            if row is None or row["channels"] != proposal.channels:
                child = inherit_weights(model, child_spec)
                accuracy = proxy_accuracy(child, data, cfg.proxy, step, cfg.seed)
                cut = current_pred - predicted
                row = {"type": "proposal", "step": step, **proposal.to_dict(), "label": proposal.label(),
                       "from": (spec.blocks[proposal.blocks[0]].exp_size if proposal.kind == "E" else spec.blocks[proposal.blocks[0]].out),
                       "predicted_ms": predicted, "parent_predicted_ms": current_pred, "proxy_accuracy": accuracy,
                       "parent_accuracy": current_acc, "score": (accuracy - current_acc) / cut}  # fmt: skip
                _append(log_path, row)
            if best is None or row["score"] > best[0]["score"]:
                best = (row, proposal, child_spec, child)
        row, proposal, child_spec, child = best
        if child is None:  # chosen from a resumed log: its weights are recomputed, identically
            child = inherit_weights(model, child_spec)
            proxy_accuracy(child, data, cfg.proxy, step, cfg.seed)
        measured = store.measure({"step": child_spec}, why=f"step {step}")["step"]
        predicted_before = latency.predict(child_spec)
        latency = store.model()
        save_weights(out_dir / "steps" / f"step-{step:02d}.safetensors", child.state_dict(), child.config, step=step)
        model, spec, current_acc, current_ms = child, child_spec, row["proxy_accuracy"], measured
        record = {"type": "step", "step": step, "chosen": proposal.to_dict(), "label": proposal.label(), "spec": spec.to_dict(),
                  "predicted_ms": predicted_before, "measured_ms": measured, "proxy_accuracy": current_acc,
                  "target_ms": target_ms, "seconds": round(time.perf_counter() - start, 1)}  # fmt: skip
        _append(log_path, record)
        records.append(record)
        log(f"step {step}: {proposal.label()} -> {measured:.3f} ms measured ({predicted_before:.3f} predicted), "
            f"proxy accuracy {current_acc:.4f}, {record['seconds']:.0f} s")
    if current_ms > target_ms:
        raise SearchError(f"stopped after --max-steps {cfg.max_steps} steps at {current_ms:.3f} ms, above the target {target_ms:.3f} ms")
    return _write_spec(out_dir, spec, run_dir, config, seed_ms=seed_ms, target_ms=target_ms, measured_ms=current_ms, steps=step,
                       setting=setting)  # fmt: skip


def _write_spec(out_dir: Path, spec: ModelSpec, run_dir: Path, config: dict[str, Any], *, seed_ms: float, target_ms: float,
                measured_ms: float, steps: int, setting: Setting) -> Path:  # fmt: skip
    path = out_dir / "searched.json"
    s = setting
    data = {
        "name": f"{spec.name}_netadapt",
        "paper_table": "searched: NetAdapt (Yang et al. 2018) as in Howard et al. 2019, section 4.2",
        "notes": (f"python -m mnv3.search from {shown_path(run_dir)} ({config.get('experiment')}, {spec.name}, drop_first_strides "
                  f"{s.drop_first_strides}) in {steps} steps: {measured_ms:.3f} ms measured against the seed's {seed_ms:.3f} ms "
                  f"(target {target_ms:.3f} ms), ExecuTorch fp32 with XNNPACK, batch 1, {s.threads} thread, "
                  f"{s.input_size}x{s.input_size} input, on {cpu_model()}. Train it from scratch with "
                  f"python -m mnv3.train --experiment {config.get('experiment')} --arch {shown_path(path)}"),
        **{k: v for k, v in spec.to_dict().items() if k != "name"},
    }
    write_json_atomic(path, data)
    _append(out_dir / "search.jsonl", {"type": "done", "spec_file": path.name, "measured_ms": measured_ms, "steps": steps})
    return path
