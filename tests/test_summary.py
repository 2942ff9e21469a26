"""mnv3.summary: the paper's table from a model, checked against the paper, torchvision and PyTorch's flop counter."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torchvision
from torch.utils.flop_counter import FlopCounterMode

from mnv3.model import build_model
from mnv3.summary import main, summarize, totals

REPO = Path(__file__).resolve().parents[1]
TV_WEIGHTS = {
    "small": torchvision.models.MobileNet_V3_Small_Weights.IMAGENET1K_V1,
    "large": torchvision.models.MobileNet_V3_Large_Weights.IMAGENET1K_V1,
}
PUBLISHED_PARAMS = {"small": 2_542_856, "large": 5_483_032}
PAPER_MADDS = {"small": 56e6, "large": 219e6}  # Table 3 of Howard et al. 2019

# Tables 2 and 1 of the paper: input, operator, exp size, #out, SE, NL, s ("k" classes -> 1000).
# One deliberate difference: Table 2 marks SE on Small's last 1x1 conv; torchvision and the TF
# reference have none there (see mnv3/specs/small.json), so this copy has False.
PAPER_SMALL = [
    ("224²×3", "conv2d 3x3", None, 16, False, "HS", 2),
    ("112²×16", "bneck 3x3", 16, 16, True, "RE", 2),
    ("56²×16", "bneck 3x3", 72, 24, False, "RE", 2),
    ("28²×24", "bneck 3x3", 88, 24, False, "RE", 1),
    ("28²×24", "bneck 5x5", 96, 40, True, "HS", 2),
    ("14²×40", "bneck 5x5", 240, 40, True, "HS", 1),
    ("14²×40", "bneck 5x5", 240, 40, True, "HS", 1),
    ("14²×40", "bneck 5x5", 120, 48, True, "HS", 1),
    ("14²×48", "bneck 5x5", 144, 48, True, "HS", 1),
    ("14²×48", "bneck 5x5", 288, 96, True, "HS", 2),
    ("7²×96", "bneck 5x5", 576, 96, True, "HS", 1),
    ("7²×96", "bneck 5x5", 576, 96, True, "HS", 1),
    ("7²×96", "conv2d 1x1", None, 576, False, "HS", 1),
    ("7²×576", "pool 7x7", None, None, False, None, 1),
    ("1²×576", "conv2d 1x1, NBN", None, 1024, False, "HS", 1),
    ("1²×1024", "conv2d 1x1, NBN", None, 1000, False, None, 1),
]
PAPER_LARGE = [
    ("224²×3", "conv2d 3x3", None, 16, False, "HS", 2),
    ("112²×16", "bneck 3x3", 16, 16, False, "RE", 1),
    ("112²×16", "bneck 3x3", 64, 24, False, "RE", 2),
    ("56²×24", "bneck 3x3", 72, 24, False, "RE", 1),
    ("56²×24", "bneck 5x5", 72, 40, True, "RE", 2),
    ("28²×40", "bneck 5x5", 120, 40, True, "RE", 1),
    ("28²×40", "bneck 5x5", 120, 40, True, "RE", 1),
    ("28²×40", "bneck 3x3", 240, 80, False, "HS", 2),
    ("14²×80", "bneck 3x3", 200, 80, False, "HS", 1),
    ("14²×80", "bneck 3x3", 184, 80, False, "HS", 1),
    ("14²×80", "bneck 3x3", 184, 80, False, "HS", 1),
    ("14²×80", "bneck 3x3", 480, 112, True, "HS", 1),
    ("14²×112", "bneck 3x3", 672, 112, True, "HS", 1),
    ("14²×112", "bneck 5x5", 672, 160, True, "HS", 2),
    ("7²×160", "bneck 5x5", 960, 160, True, "HS", 1),
    ("7²×160", "bneck 5x5", 960, 160, True, "HS", 1),
    ("7²×160", "conv2d 1x1", None, 960, False, "HS", 1),
    ("7²×960", "pool 7x7", None, None, False, None, 1),
    ("1²×960", "conv2d 1x1, NBN", None, 1280, False, "HS", 1),
    ("1²×1280", "conv2d 1x1, NBN", None, 1000, False, None, 1),
]
PAPER_TABLES = {"small": PAPER_SMALL, "large": PAPER_LARGE}


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def summaries():
    """Each built-in model and its summary at 224 (built once: the tests below only read them)."""
    out = {}
    for arch in ("small", "large"):
        model = build_model(arch)
        out[arch] = (model, summarize(model, 224))
    return out


def reference_macs(model, input_shape) -> int:
    """Multiply-adds by PyTorch's own flop counter (it counts 2 flops per multiply-add of conv and matmul)."""
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model.eval()(torch.zeros(*input_shape))
    return counter.get_total_flops() // 2


@pytest.mark.parametrize("arch", ["small", "large"])
def test_table_matches_the_paper(summaries, arch):
    _, rows = summaries[arch]
    got = [(r["input"], r["operator"], r["exp_size"], None if r["operator"].startswith("pool") else r["out"], r["se"], r["nl"], r["stride"]) for r in rows]
    assert got == PAPER_TABLES[arch]
    assert rows[0]["in_shape"] == (3, 224, 224)
    assert rows[-1]["in_shape"] == (rows[-2]["out"], 1, 1) and rows[-1]["out_shape"] == (1000, 1, 1)


@pytest.mark.parametrize("arch", ["small", "large"])
def test_totals_equal_parameter_count(summaries, arch):
    model, rows = summaries[arch]
    t = totals(rows)
    assert t["params"] == sum(p.numel() for p in model.parameters()) == PUBLISHED_PARAMS[arch]
    assert t["params"] == TV_WEIGHTS[arch].meta["num_params"]
    assert t["rows"] == len(rows) == len(PAPER_TABLES[arch])


@pytest.mark.parametrize("arch", ["small", "large"])
def test_row_params_equal_torchvision_modules(summaries, arch):
    _, rows = summaries[arch]
    tv = getattr(torchvision.models, f"mobilenet_v3_{arch}")()
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    expected = [count(f) for f in tv.features] + [0, count(tv.classifier[0]), count(tv.classifier[3])]
    assert [r["params"] for r in rows] == expected


@pytest.mark.parametrize("arch", ["small", "large"])
def test_macs_in_published_range(summaries, arch):
    model, rows = summaries[arch]
    macs = totals(rows)["macs"]
    assert macs == reference_macs(model, (1, 3, 224, 224))
    # torchvision's published GFLOPS (its "_ops": 0.057 and 0.217, counted the same way).
    assert round(macs / 1e9, 3) == TV_WEIGHTS[arch].meta["_ops"]
    # The paper's 56M and 219M multiply-adds, within 2%.
    assert abs(macs - PAPER_MADDS[arch]) / PAPER_MADDS[arch] < 0.02
    if arch == "small":
        assert 56e6 <= macs <= 57e6


def test_row_macs_follow_the_formulas(summaries):
    _, rows = summaries["small"]
    assert rows[0]["macs"] == 112 * 112 * 16 * 3 * 3 * 3  # stem: out_h*out_w*out_ch*in_ch*k*k
    # First bneck: depthwise 3x3 at stride 2 (56x56x16), SE 16->8->16 on 1x1, projection 1x1 16->16.
    assert rows[1]["macs"] == 56 * 56 * 16 * 1 * 9 + (16 * 8 + 8 * 16) + 56 * 56 * 16 * 16
    assert rows[12]["macs"] == 7 * 7 * 576 * 96  # last 1x1 conv
    assert rows[13]["macs"] == 0 and rows[13]["params"] == 0  # pooling is not counted
    assert rows[14]["macs"] == 576 * 1024 and rows[15]["macs"] == 1024 * 1000  # Linear: in*out


@pytest.mark.parametrize("arch", ["small", "large"])
@pytest.mark.parametrize("kwargs,size", [({"num_classes": 10, "in_channels": 1}, 28), ({"num_classes": 10, "drop_first_strides": 2}, 32), ({"width_mult": 0.75}, 96)])
def test_other_models_add_up(arch, kwargs, size):
    model = build_model(arch, **kwargs)
    rows = summarize(model, size)
    t = totals(rows)
    assert t["params"] == sum(p.numel() for p in model.parameters())
    assert t["macs"] == reference_macs(model, (1, model.features[0][0].in_channels, size, size))
    assert rows[0]["in_shape"] == (model.features[0][0].in_channels, size, size)


def test_stride_option_changes_later_input_shapes():
    base = summarize(build_model("small"), 224)
    dropped = summarize(build_model("small", drop_first_strides=2), 224)
    # The stem and the first bneck now keep the resolution, so every later row sees 4x the side.
    assert [r["stride"] for r in dropped[:2]] == [1, 1] and [r["stride"] for r in base[:2]] == [2, 2]
    assert dropped[0]["in_shape"] == base[0]["in_shape"] == (3, 224, 224)
    assert base[1]["in_shape"] == (16, 112, 112) and dropped[1]["in_shape"] == (16, 224, 224)
    for b, d in zip(base[2:14], dropped[2:14]):
        assert d["in_shape"] == (b["in_shape"][0], 4 * b["in_shape"][1], 4 * b["in_shape"][2])
    assert base[13]["operator"] == "pool 7x7" and dropped[13]["operator"] == "pool 28x28"
    assert dropped[2]["input"] == "224²×16"
    assert totals(dropped)["params"] == totals(base)["params"]
    assert totals(dropped)["macs"] > 10 * totals(base)["macs"]


def test_input_size_and_channels_come_from_the_forward_pass():
    rows = summarize(build_model("small", num_classes=10, in_channels=1), 28)
    assert rows[0]["input"] == "28²×1" and rows[0]["in_shape"] == (1, 28, 28)
    assert rows[13]["operator"] == "pool 1x1"  # 28 -> 14 -> 7 -> 4 -> 2 -> 1
    assert rows[-1]["out"] == 10


def test_summarize_leaves_the_model_as_it_was():
    model = build_model("small").train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    n_hooks = sum(len(m._forward_hooks) for m in model.modules())
    summarize(model, 64)
    assert model.training
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())
    assert sum(len(m._forward_hooks) for m in model.modules()) == n_hooks


@pytest.mark.parametrize("size", [0, -1, 2.5, True, 100000])  # 100000 px would allocate 120 GB
def test_bad_input_size(size):
    with pytest.raises(ValueError, match="input_size must be a positive integer"):
        summarize(build_model("small"), size)


# ------------------------------------------------------------------------------ CLI


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "mnv3.summary", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        encoding="utf-8",
        env={**os.environ, "PYTHONIOENCODING": "utf-8", "OMP_NUM_THREADS": "1"},
        timeout=120,
    )


def test_cli_prints_the_table_and_totals(summaries):
    result = run_cli("small", "--input-size", "224")
    assert result.returncode == 0, result.stderr
    _, rows = summaries["small"]
    t = totals(rows)
    assert f"{PUBLISHED_PARAMS['small']:,}" in result.stdout  # 2,542,856
    assert f"{t['macs']:,}" in result.stdout
    assert "bneck 5x5" in result.stdout and "conv2d 1x1, NBN" in result.stdout
    assert "not counted" in result.stdout  # the MAC convention is stated
    assert result.stderr == ""


def test_cli_bad_spec_exits_2_without_traceback(tmp_path):
    data = json.loads((REPO / "mnv3" / "specs" / "small.json").read_text(encoding="utf-8"))
    data["blocks"][3]["stride"] = 3
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    result = run_cli(str(path))
    assert result.returncode == 2
    assert str(path) in result.stderr and "field 'stride' is 3; allowed: 1 or 2" in result.stderr
    assert "Traceback" not in result.stderr + result.stdout


def test_cli_in_process(capsys):
    assert main(["large", "--num-classes", "10", "--input-size", "32", "--drop-first-strides", "2"]) == 0
    out = capsys.readouterr().out
    model = build_model("large", num_classes=10, drop_first_strides=2)
    assert f"{sum(p.numel() for p in model.parameters()):,} parameters" in out
    assert "pool 4x4" in out  # 32 -> 32 -> 32 -> 16 -> 8 -> 4


@pytest.mark.parametrize(
    "args,message",
    [
        (["medium"], "unknown arch 'medium': use 'small', 'large'"),
        (["small", "--drop-first-strides", "9"], "drop_first_strides must be an integer from 0 to 5"),
        (["small", "--input-size", "0"], "input_size must be a positive integer"),
        (["small", "--num-classes", "0"], "num_classes must be a positive integer"),
        (["small", "--width-mult", "-1"], "width_mult must be a positive number"),
        (["small", "--width-mult", "nan"], "width_mult must be a positive number"),
    ],
)
def test_cli_bad_arguments_exit_2(capsys, args, message):
    assert main(args) == 2
    captured = capsys.readouterr()
    assert message in captured.err and "Traceback" not in captured.err
    assert captured.out == ""


def test_cli_argparse_errors_exit_2(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["small", "--input-size", "big"])
    assert exit_info.value.code == 2
    assert "invalid int value: 'big'" in capsys.readouterr().err


def test_cli_help_has_examples(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert "examples:" in out and "--drop-first-strides 2" in out and "--input-size" in out
    assert "not counted" in out
