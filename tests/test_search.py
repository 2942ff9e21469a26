"""The search (mnv3.search): the latency model, the proposals, the loop end to end on a tiny spec,
its resume, and the comparison's arithmetic. The real search is `make search`, not a test."""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from mnv3 import search
from mnv3.data import dataset_info
from mnv3.export import RawPixelModel, lower_to_pte
from mnv3.model import MobileNetV3, build_model
from mnv3.search import latency as lat
from mnv3.search.surgery import MIN_CHANNELS, CHANNEL_STEP, apply_proposal, inherit_weights, structure
from mnv3.spec import SpecError, load_spec
from mnv3.summary import summarize, totals

TINY_SPEC = Path(__file__).parent / "data" / "tiny_spec.json"
REPO = Path(__file__).resolve().parents[1]
CIFAR = dataset_info("cifar10")
SETTING = lat.Setting(32, 3, 10, 2, CIFAR.mean, CIFAR.std, 1)

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.mark.parametrize("width", [0.5, 0.75, 0.85, 1.25])
def test_spec_at_width_is_the_width_multiplier(width):
    wide = build_model("small", num_classes=10, width_mult=width)
    same = MobileNetV3(search.spec_at_width(load_spec("small"), width), num_classes=10)
    assert {k: v.shape for k, v in wide.state_dict().items()} == {k: v.shape for k, v in same.state_dict().items()}


@pytest.mark.parametrize("arch, drop, size", [("small", 2, 32), ("large", 0, 224), (str(TINY_SPEC), 2, 28)])
def test_features_count_the_models_multiply_adds(arch, drop, size):
    spec = load_spec(arch)
    setting = lat.Setting(size, 3, 10, drop, CIFAR.mean, CIFAR.std, lanes=1)  # lanes 1: no rounding to vectors
    f = lat.features(spec, setting)
    model = MobileNetV3(spec, num_classes=10, drop_first_strides=drop)
    classifier = sum(m.in_features * m.out_features for m in model.classifier if isinstance(m, torch.nn.Linear))
    macs = totals(summarize(model, size))["macs"]
    assert sum(v for k, v in f.items() if k.endswith("_macs")) * 1e6 + classifier == pytest.approx(macs, rel=1e-9)
    narrower = apply_proposal(spec, search.Proposal("E", (len(spec.blocks) - 1,), 64), drop_first_strides=drop)
    assert lat.features(narrower, setting)["pw_macs"] < f["pw_macs"]


def test_features_count_channels_in_whole_vectors():
    spec = load_spec("small")
    to32, to24 = (apply_proposal(spec, search.Proposal("B", (3, 4, 5), c), drop_first_strides=2) for c in (32, 24))
    lanes16, lanes1 = lat.Setting(32, 3, 10, 2, CIFAR.mean, CIFAR.std, lanes=16), lat.Setting(32, 3, 10, 2, CIFAR.mean, CIFAR.std, lanes=1)
    assert lat.features(to32, lanes16)["pw_macs"] == lat.features(to24, lanes16)["pw_macs"]  # both two vectors of 16
    assert lat.features(to32, lanes1)["pw_macs"] > lat.features(to24, lanes1)["pw_macs"]
    # 40 channels take three vectors of 16, 32 take two: the cut saves a third of those layers' work, not a fifth.
    assert lat.features(spec, lanes16)["pw_macs"] - lat.features(to32, lanes16)["pw_macs"] > \
        lat.features(spec, lanes1)["pw_macs"] - lat.features(to32, lanes1)["pw_macs"]


def test_latency_model_recovers_a_linear_cost():
    truth = {"pw_macs": 0.004, "dw3_macs": 0.02, "dw5_macs": 0.01, "stem_macs": 0.0, "fc_macs": 0.003, "elementwise": 0.001}
    specs = lat.random_specs(load_spec("small"), 20, seed=3, drop_first_strides=2)

    def cost(spec):
        return 0.3 + sum(truth[k] * v for k, v in lat.features(spec, SETTING).items())

    model = lat.LatencyModel(SETTING, [{"spec": s.to_dict(), "latency_ms": cost(s), "why": "fit"} for s in specs[:14]])
    for spec in specs[14:]:
        assert model.predict(spec) == pytest.approx(cost(spec), rel=1e-6)
    assert model.intercept == pytest.approx(0.3, rel=1e-6)


def test_random_specs_keep_the_structure_and_vary():
    parent = load_spec("small")
    specs = lat.random_specs(parent, 8, seed=0, drop_first_strides=2)
    assert all(structure(s, 2) == structure(parent, 2) for s in specs)
    assert len({lat.spec_digest(s) for s in specs}) == 8
    assert all(b.exp_size % CHANNEL_STEP == 0 and b.out >= MIN_CHANNELS for s in specs for b in s.blocks)


def test_proposals_cut_just_enough():
    parent = load_spec("small")
    specs = lat.random_specs(parent, 12, seed=5, drop_first_strides=2)
    model = lat.LatencyModel(SETTING, [{"spec": s.to_dict(), "latency_ms": 0.2 + 0.01 * sum(lat.features(s, SETTING).values()),
                                        "why": "fit"} for s in specs])  # fmt: skip
    delta = 0.04 * model.predict(parent)
    proposals = search.make_proposals(parent, model, delta, 2)
    assert {p.kind for p, _, _ in proposals} == {"E", "B"}
    for proposal, child, predicted in proposals:
        assert model.predict(parent) - predicted >= delta
        assert structure(child, 2) == structure(parent, 2)
        wider = search.Proposal(proposal.kind, proposal.blocks, proposal.channels + CHANNEL_STEP)
        old = parent.blocks[proposal.blocks[0]].exp_size if proposal.kind == "E" else parent.blocks[proposal.blocks[0]].out
        if wider.channels < old:  # the next wider child (when it keeps the structure) would not cut delta
            try:
                wider_spec = apply_proposal(parent, wider, drop_first_strides=2)
            except SpecError:
                continue
            assert model.predict(parent) - model.predict(wider_spec) < delta


def test_a_child_lowers_fully_delegated():
    parent = build_model(TINY_SPEC, num_classes=10, in_channels=3, drop_first_strides=2).eval()
    child = inherit_weights(parent, apply_proposal(parent.spec, search.Proposal("E", (3,), 48), drop_first_strides=2)).eval()
    _, report = lower_to_pte(RawPixelModel(child, CIFAR.mean, CIFAR.std, image_size_in=32, image_size=32).eval(), (1, 3, 32, 32))
    assert report["fully_delegated"], report


def test_frontier_gap_interpolates_and_gives_a_welch_interval():
    from scipy.stats import t

    searched, low, high = [0.80, 0.82], [0.77, 0.79], [0.82, 0.83]
    gap = search.frontier_gap(searched, low, high, {"searched": 1.25, "low": 1.0, "high": 2.0})
    frontier = 0.78 + 0.25 * (0.825 - 0.78)
    assert gap["gap_points"] == pytest.approx(100 * (0.81 - frontier))
    terms = [np.var(searched, ddof=1) / 2, 0.75**2 * np.var(low, ddof=1) / 2, 0.25**2 * np.var(high, ddof=1) / 2]
    df = sum(terms) ** 2 / sum(x**2 for x in terms)
    half = 100 * t.ppf(0.975, df) * math.sqrt(sum(terms))
    assert gap["ci95_points"] == pytest.approx([gap["gap_points"] - half, gap["gap_points"] + half])
    # The frontier reaches 81% at 1.0 + (0.81 - 0.78) / 0.045 ms: that over 1.25 ms is the latency ratio.
    assert gap["latency_ratio_at_equal_accuracy"] == pytest.approx((1.0 + 0.03 / 0.045) / 1.25)
    assert not gap["extrapolated"]


@pytest.mark.parametrize("text, expected", [("75%", (None, 0.75)), ("0.62ms", (0.62, None)), ("80 %", (None, 0.8))])
def test_target_takes_a_percentage_or_milliseconds(text, expected):
    assert search.parse_target(text) == expected


@pytest.mark.parametrize("text", ["0.75", "150%", "0%", "-1ms", "fast"])
def test_an_unclear_target_is_refused(text):
    import argparse

    with pytest.raises(argparse.ArgumentTypeError, match="--target"):
        search.parse_target(text)


# ----------------------------------------------------------------------------- end to end, tiny


@pytest.fixture(scope="module")
def tiny_seed(tmp_path_factory):
    """A finished run of the tiny spec on synthetic images (1x28x28), trained a few steps."""
    from mnv3.train import main

    root = tmp_path_factory.mktemp("search")
    main(["--experiment", "cifar10_small_s1", "--dataset", "synthetic", "--arch", str(TINY_SPEC), "--epochs", "1",
          "--max-train-samples", "256", "--batch-size", "64", "--threads", "1", "--out", str(root / "runs"),
          "--name", "tiny", "--data-root", str(root / "data")])  # fmt: skip
    return root / "runs" / "quick" / "tiny"


@pytest.fixture(scope="module")
def tiny_latency(tiny_seed, tmp_path_factory):
    """``python -m mnv3.search latency`` on the tiny seed, with few specs: the measured folder,
    which the other tests copy (lowering a program takes seconds)."""
    out = tmp_path_factory.mktemp("latency")
    assert search.main(["latency", str(tiny_seed), "--out", str(out), "--fit", "4", "--held-out", "2", "--budget", "1",
                        "--cuts", "0.5"]) == 0  # fmt: skip
    return out


def test_latency_validation_reports_both_numbers(tiny_latency):
    report = json.loads((tiny_latency / "latency-validation.json").read_text())
    assert len(report["held_out"]) == 2 and math.isfinite(report["mape_percent"])
    assert len(report["cuts"]) >= 4 and -1 <= report["spearman_cuts"] <= 1
    assert report["key"]["executorch"] and report["key"]["threads"] == 1 and report["key"]["input_size"] == 28
    store = json.loads((tiny_latency / "latency" / "latency.json").read_text())
    assert store["anchor_ms"] == min(s["reference_median_ms"] for s in store["sessions"])
    assert len(store["measured"]) == 1 + 4 + 2 + len(report["cuts"])


def _search_dir(tiny_latency, tmp_path) -> Path:
    import shutil

    out = tmp_path / "search"
    shutil.copytree(tiny_latency / "latency", out / "latency")
    return out


def _search_args(seed_dir: Path, out: Path, *extra: str) -> list[str]:
    return [str(seed_dir), "--out", str(out), "--target", "85%", "--delta", "8%", "--finetune-steps", "2", "--bn-batches", "2",
            "--batch-size", "32", "--val-images", "64", "--threads", "1", "--fit-specs", "3",
            "--data-root", str(seed_dir.parents[2] / "data"), *extra]  # fmt: skip


def test_search_end_to_end_resumes_and_never_reads_the_test_set(tiny_seed, tiny_latency, tmp_path, monkeypatch, capsys):
    import mnv3.search.proxy as proxy

    real = proxy.load_run_split
    splits_read = []

    def train_only(config, split, **kwargs):
        assert split != "test", "the search read the test set"
        splits_read.append(split)
        return real(config, split, **kwargs)

    monkeypatch.setattr(proxy, "load_run_split", train_only)
    out = _search_dir(tiny_latency, tmp_path)
    assert search.main(_search_args(tiny_seed, out, "--max-steps", "1")) == 2  # stops at the step cap, above the target
    assert "stopped after --max-steps 1" in capsys.readouterr().err
    first = search.read_log(out / "search.jsonl")
    assert splits_read and set(splits_read) <= {"train", "val"}  # the data came through the watched reader
    assert [r["type"] for r in first].count("step") == 1
    step1 = next(r for r in first if r["type"] == "step")
    assert (out / "steps" / "step-01.safetensors").is_file()

    assert search.main(_search_args(tiny_seed, out)) == 0  # resumes at step 2, reaches the target
    records = search.read_log(out / "search.jsonl")
    kinds = [r["type"] for r in records]
    assert kinds[0] == "start" and kinds.count("start") == 1 and kinds[-1] == "done"
    steps = [r for r in records if r["type"] == "step"]
    assert steps[0] == step1 and len(steps) >= 2
    assert [r["step"] for r in steps] == list(range(1, len(steps) + 1))
    assert steps[-1]["measured_ms"] <= records[0]["target_ms"] < steps[-2]["measured_ms"]
    proposals_of_1 = [r for r in records if r["type"] == "proposal" and r["step"] == 1]
    assert len(proposals_of_1) == len({(r["kind"], tuple(r["blocks"])) for r in proposals_of_1})  # step 1 not redone

    spec_file = out / "searched.json"
    notes = json.loads(spec_file.read_text())["notes"]
    assert "python -m mnv3.search" in notes and "ExecuTorch" in notes
    spec = load_spec(spec_file)
    assert spec.to_dict()["blocks"] == steps[-1]["spec"]["blocks"]
    assert structure(spec, 2) == structure(load_spec(TINY_SPEC), 2)

    # Notebook 08's readers see the same search.
    from mnv3.search import results

    found = results.load_search(out)
    assert len(results.proposals_frame(found)) == sum(r["type"] == "proposal" for r in records)
    assert results.proposals_frame(found)["chosen"].sum() == len(steps)
    assert list(results.steps_frame(found).index) == list(range(len(steps) + 1))
    results.plot_trajectory(found)

    # The comparison: the searched spec and the two widths of the seed's spec around it, trained from
    # scratch, two at a time in processes of their own.
    data_root = str(tiny_seed.parents[2] / "data")
    assert search.main(["compare", str(out), "--seed-run", str(tiny_seed), "--epochs", "1", "--seeds", "0,1", "--jobs", "2",
                        "--grid", "0.25,0.5,0.75,1", "--data-root", data_root]) == 0  # fmt: skip
    comparison = json.loads((out / "comparison.json").read_text())
    latency = comparison["latency_ms"]
    assert latency["low"] < latency["searched"] < latency["high"]
    assert sorted(comparison["accuracies"]) == sorted(["searched", f"width{comparison['widths']['low']:g}",
                                                       f"width{comparison['widths']['high']:g}"])  # fmt: skip
    for arm, runs in comparison["runs"].items():
        assert len(runs) == 2
        for run in runs:
            config = json.loads((REPO / run / "config.json").read_text())
            assert config["model"]["spec"]["name"] == ("tiny_for_tests_netadapt" if arm == "searched" else "tiny_for_tests")
            assert config["fields"]["epochs"] == 1 and config["dataset"] == "synthetic"
    assert math.isfinite(comparison["gap"]["gap_points"])


def test_a_target_above_the_seeds_latency_is_refused(tiny_seed, tiny_latency, tmp_path, capsys):
    args = _search_args(tiny_seed, _search_dir(tiny_latency, tmp_path))
    args[args.index("--target") + 1] = "500ms"
    assert search.main(args) == 2
    assert "not below the seed's measured latency" in capsys.readouterr().err


def test_a_search_log_of_other_settings_is_refused(tiny_seed, tmp_path, capsys):
    out = tmp_path / "search"
    out.mkdir()
    (out / "search.jsonl").write_text(json.dumps({"type": "start", "run_dir": "elsewhere", "config": {}, "setting": {}}) + "\n")
    assert search.main(_search_args(tiny_seed, out)) == 2
    assert "log of another search" in capsys.readouterr().err


def test_publish_replaces_the_copy_whole_and_keeps_it_when_it_fails(tiny_seed, tmp_path):
    import shutil

    from mnv3.search.publish import publish_search

    search_dir, dest = tmp_path / "search", tmp_path / "reports" / "search"
    search_dir.mkdir()
    (search_dir / "search.jsonl").write_text(json.dumps({"type": "start"}) + "\n")
    shutil.copyfile(TINY_SPEC, search_dir / "searched.json")
    publish_search(search_dir, tiny_seed, dest)
    assert (dest / "searched.json").read_bytes() == TINY_SPEC.read_bytes()
    assert (dest / "seed" / "tiny" / "final.safetensors").is_file() and (dest / "seed" / "tiny" / "test.json").is_file()
    assert not (dest / "comparison.json").exists()
    (dest / "comparison.json").write_text("{}")  # left by an earlier search that got that far
    publish_search(search_dir, tiny_seed, dest)
    assert not (dest / "comparison.json").exists()  # replaced whole: never two searches mixed
    before = sorted(p.relative_to(dest) for p in dest.rglob("*"))
    unfinished = tmp_path / "unfinished"
    shutil.copytree(tiny_seed, unfinished)
    (unfinished / "test.json").unlink()
    with pytest.raises(Exception, match="not a finished run"):
        publish_search(search_dir, unfinished, dest)
    assert sorted(p.relative_to(dest) for p in dest.rglob("*")) == before
    assert [p.name for p in dest.parent.iterdir()] == ["search"]  # no staging folder left


def _fake_search(tmp_path: Path, seed_run: str) -> Path:
    search_dir = tmp_path / "search"
    (search_dir / "latency").mkdir(parents=True)
    (search_dir / "search.jsonl").write_text(json.dumps({"type": "start", "run_dir": seed_run}) + "\n")
    return search_dir


COMMITTED = REPO / "reports" / "search"
COMMITTED_SEED = COMMITTED / "seed" / "cifar10_small_s1-cpu15"


def test_publish_never_deletes_what_is_not_a_published_search(tmp_path, capsys):
    search_dir = _fake_search(tmp_path, "runs/search/full/cifar10_small_s1-cpu15")
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "important.txt").write_text("precious")
    assert search.main(["publish", str(search_dir), "--seed-run", str(COMMITTED_SEED), "--to", str(mine)]) == 2
    err = capsys.readouterr().err
    assert "important.txt" in err and "not a published search" in err and len(err.strip().splitlines()) == 1
    assert (mine / "important.txt").read_text() == "precious" and [p.name for p in mine.iterdir()] == ["important.txt"]
    a_file = tmp_path / "a_file"
    a_file.write_text("mine too")
    assert search.main(["publish", str(search_dir), "--seed-run", str(COMMITTED_SEED), "--to", str(a_file)]) == 2
    assert "is a file" in capsys.readouterr().err and a_file.read_text() == "mine too"


def test_publish_refuses_another_seed_run_and_a_published_copy_as_source(tmp_path, capsys):
    search_dir = _fake_search(tmp_path, "runs/search/full/another-seed")
    dest = tmp_path / "dest"
    assert search.main(["publish", str(search_dir), "--seed-run", str(COMMITTED_SEED), "--to", str(dest)]) == 2
    assert "not the run this search started from" in capsys.readouterr().err and not dest.exists()
    # The committed copy lacks latency/ and runs/<profile>/: publishing it would drop both.
    assert search.main(["publish", str(COMMITTED), "--seed-run", str(COMMITTED_SEED), "--to", str(dest)]) == 2
    assert "published copy" in capsys.readouterr().err and not dest.exists()
    assert search.main(["publish", str(COMMITTED), "--seed-run", str(COMMITTED_SEED), "--to", str(COMMITTED)]) == 2
    assert (COMMITTED / "latency.json").is_file() and (COMMITTED / "runs").is_dir()  # untouched


def test_search_refuses_an_unfinished_seed_and_an_out_that_is_a_file(tmp_path, capsys):
    import shutil

    unfinished = tmp_path / "unfinished"
    shutil.copytree(COMMITTED_SEED, unfinished)
    (unfinished / "test.json").unlink()
    assert search.main([str(unfinished), "--out", str(tmp_path / "s")]) == 2
    assert "unfinished (no test.json)" in capsys.readouterr().err and not (tmp_path / "s").exists()
    a_file = tmp_path / "a_file"
    a_file.write_text("")
    assert search.main([str(COMMITTED_SEED), "--out", str(a_file), "--data-root", str(tmp_path / "data")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and str(a_file) in err and "Traceback" not in err
