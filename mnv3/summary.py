"""The paper's architecture table (Tables 1 and 2 of Howard et al. 2019), computed from a built model,
and what notebook 02 shows of it: totals against the paper and torchvision, and their equivalence;
and the memory a training step needs at an input size, which ``mnv3.train`` checks before it starts
(:func:`check_training_memory`).

    python -m mnv3.summary small --input-size 224
    python -m mnv3.summary large --num-classes 10 --input-size 32 --drop-first-strides 2

or, in a notebook::

    rows = summarize(build_model("small"), 224)
    pandas.DataFrame(rows); totals(rows)

There is one row per line of the paper's table: the stem conv, each bneck, the last 1x1 conv, the
global pool and the two classifier layers (``nn.Linear`` here, the paper's "conv2d 1x1, NBN" rows).
Shapes come from a real forward pass with hooks, so any input size and ``drop_first_strides`` are
reflected exactly.

MAC convention: a MAC is one multiply-add. Only ``nn.Conv2d`` layers (out_h * out_w * out_ch *
in_ch / groups * k_h * k_w) and ``nn.Linear`` layers (in * out) are counted, the squeeze-and-excite
1x1 convs included. BatchNorm (foldable into the preceding conv), biases, activations, pooling,
residual adds and the SE scaling multiply are not counted. MACs are per image.
"""
from __future__ import annotations

import argparse
import os
import sys
from typing import Any

import torch
from torch import nn

from .experiments import MAX_IMAGE_SIZE
from .files import os_error_line
from .layers import HardSwish
from .model import MobileNetV3, build_model

__all__ = ["MAC_CONVENTION", "PAPER_TOTALS", "summarize", "totals", "format_table", "architecture_table", "totals_against_references",
           "experiment_architectures", "torchvision_equivalence", "training_memory", "available_memory", "check_training_memory",
           "main"]  # fmt: skip

MAC_CONVENTION = (
    "MACs = multiply-adds per image of Conv2d (out_h*out_w*out_ch*in_ch/groups*k*k) and Linear (in*out) "
    "layers, SE's 1x1 convs included; BatchNorm (foldable), biases, activations, pooling, residual adds "
    "and the SE scaling multiply are not counted."
)


def _nl(module: nn.Module) -> str | None:
    """The paper's NL column for a row: 'RE', 'HS' or None (linear)."""
    for m in module.modules():
        if isinstance(m, nn.ReLU):
            return "RE"
        if isinstance(m, (HardSwish, nn.Hardswish)):
            return "HS"
    return None


def _macs(module: nn.Module, inp: torch.Tensor, out: torch.Tensor) -> int:
    if isinstance(module, nn.Conv2d):
        out_h, out_w = out.shape[-2:]
        k_h, k_w = module.kernel_size
        return out_h * out_w * module.out_channels * (module.in_channels // module.groups) * k_h * k_w
    if isinstance(module, nn.Linear):
        # Per image: every leading dimension but the batch multiplies the work.
        positions = inp[0].numel() // module.in_features
        return positions * module.in_features * module.out_features
    return 0


def _chw(shape: torch.Size) -> tuple[int, int, int]:
    """(C, H, W) of one image's activation; a (N, C) Linear input is a 1x1 map, as in the paper."""
    if len(shape) == 4:
        return (int(shape[1]), int(shape[2]), int(shape[3]))
    if len(shape) == 2:
        return (int(shape[1]), 1, 1)
    raise ValueError(f"unexpected activation shape {tuple(shape)}")


def _input_label(c: int, h: int, w: int) -> str:
    return f"{h}²×{c}" if h == w else f"{h}×{w}×{c}"


def summarize(model: MobileNetV3, input_size: int) -> list[dict[str, Any]]:
    """One dict per row of the paper's table, from a forward pass on a 1 x C x S x S input.

    Keys of each row:
        input: the row's input as the paper writes it, e.g. "224²×3" (H², then channels).
        in_shape, out_shape: (C, H, W) of the row's input and output (a Linear's are (C, 1, 1)).
        operator: "conv2d 3x3", "bneck 3x3", "bneck 5x5", "conv2d 1x1", "pool 7x7" or "conv2d 1x1, NBN".
        exp_size: the bneck's expansion size (None for other rows).
        out: output channels. se: whether the row has squeeze-and-excite.
        nl: "RE" (ReLU), "HS" (h-swish) or None (linear). stride: the row's stride.
        params: parameters of the row's modules; the rows add up to the whole model.
        macs: multiply-adds of the row's Conv2d and Linear layers (see ``MAC_CONVENTION``: BatchNorm,
            biases, activations, pooling, residual adds and SE's scaling multiply are not counted).

    The model is run in eval mode under ``torch.no_grad`` (BatchNorm statistics are left untouched)
    and put back in the mode it was in.
    """
    if isinstance(input_size, bool) or not isinstance(input_size, int) or not 0 < input_size <= MAX_IMAGE_SIZE:
        raise ValueError(f"input_size must be a positive integer (pixels per side) of at most {MAX_IMAGE_SIZE} "
                         f"(mnv3.experiments.MAX_IMAGE_SIZE), got {input_size!r}.")
    features = list(model.features)
    stem, blocks, last_conv = features[0], features[1:-1], features[-1]
    classifier_layers = [m for m in model.classifier if isinstance(m, nn.Linear)]
    if len(classifier_layers) != 2:
        raise ValueError(f"expected a classifier with two Linear layers, found {len(classifier_layers)}.")

    # (row module, operator kind) in table order.
    row_modules: list[tuple[nn.Module, str]] = [(stem, "stem")]
    row_modules += [(b, "bneck") for b in blocks]
    row_modules += [(last_conv, "conv"), (model.avgpool, "pool")]
    row_modules += [(lin, "nbn") for lin in classifier_layers]
    # The classifier's activation sits between the two Linears; it is the first NBN row's NL.
    classifier_nl = _nl(model.classifier[1 : list(model.classifier).index(classifier_layers[1])])

    shapes: dict[int, tuple[torch.Size, torch.Size]] = {}
    macs = [0] * len(row_modules)
    handles = []
    try:
        for i, (row, _) in enumerate(row_modules):

            def record_shape(_m, args, out, i=i):
                shapes[i] = (args[0].shape, out.shape)

            handles.append(row.register_forward_hook(record_shape))
            for sub in row.modules():
                if isinstance(sub, (nn.Conv2d, nn.Linear)):

                    def count(m, args, out, i=i):
                        macs[i] += _macs(m, args[0], out)

                    handles.append(sub.register_forward_hook(count))
        first = next(model.parameters())
        x = torch.zeros(1, stem[0].in_channels, input_size, input_size, dtype=first.dtype, device=first.device)
        was_training = model.training
        model.eval()
        try:
            with torch.no_grad():
                model(x)
        finally:
            model.train(was_training)
    finally:
        for h in handles:
            h.remove()

    rows = []
    for i, (row, kind) in enumerate(row_modules):
        in_shape, out_shape = (_chw(s) for s in shapes[i])
        convs = [m for m in row.modules() if isinstance(m, nn.Conv2d)]
        stride = max((m.stride[0] for m in convs), default=1)
        exp_size, se = None, False
        if kind == "stem":
            operator, nl = f"conv2d {convs[0].kernel_size[0]}x{convs[0].kernel_size[1]}", _nl(row)
        elif kind == "bneck":
            depthwise = next(m for m in convs if m.groups > 1)
            k = depthwise.kernel_size
            operator, exp_size = f"bneck {k[0]}x{k[1]}", depthwise.out_channels
            # Read NL off the depthwise stage, so the SE block's inner ReLU is never mistaken for it.
            nl = _nl(next(s for s in row.block if isinstance(s, nn.Sequential) and s[0] is depthwise))
            se = any(hasattr(m, "fc1") for m in row.modules())
        elif kind == "conv":
            k = convs[0].kernel_size
            operator, nl = f"conv2d {k[0]}x{k[1]}", _nl(row)
        elif kind == "pool":
            operator, nl = f"pool {in_shape[1]}x{in_shape[2]}", None
        else:
            operator = "conv2d 1x1, NBN"
            nl = classifier_nl if row is classifier_layers[0] else None
        rows.append(
            {
                "input": _input_label(*in_shape),
                "in_shape": in_shape,
                "operator": operator,
                "exp_size": exp_size,
                "out": out_shape[0],
                "se": se,
                "nl": nl,
                "stride": stride,
                "out_shape": out_shape,
                "params": sum(p.numel() for p in row.parameters()),
                "macs": macs[i],
            }
        )
    return rows


def totals(rows: list[dict[str, Any]]) -> dict[str, int]:
    """Sum of the rows' params and MACs: {"params": ..., "macs": ..., "rows": ...}."""
    return {
        "params": sum(r["params"] for r in rows),
        "macs": sum(r["macs"] for r in rows),
        "rows": len(rows),
    }


def training_memory(arch: str, *, num_classes: int, in_channels: int, width_mult: float = 1.0, drop_first_strides: int = 0,
                    image_size: int, batch_size: int, bytes_per_value: int = 4, copies_of_weights: int = 3) -> int:
    """An estimate (bytes) of the memory one training step needs: every layer's output for
    ``batch_size`` images of ``image_size`` px, which autograd keeps for the backward pass, and
    ``copies_of_weights`` copies of the parameters (weights, gradients, momentum; one more for an
    EMA). ``bytes_per_value``: 4 for fp32, 2 under bf16/fp16 autocast.

    The layer outputs come from a forward pass on PyTorch's meta device, which computes shapes and
    allocates nothing, so any size is estimated in a fraction of a second. Checked on the 2-core
    CPU (fp32, one thread, growth of the peak resident memory over two ``train_step`` calls): the
    estimate was 0.67 to 0.74 times the measured growth for Small (112 px x 32, 224 px x 16,
    448 px x 4 images) and 1.09 times for Large with two strides dropped (224 px x 8), so it is
    about what a step needs, on the low side: what it refuses does not fit.
    """
    with torch.device("meta"):
        model = build_model(arch, num_classes=num_classes, in_channels=in_channels, width_mult=width_mult,
                            drop_first_strides=drop_first_strides).eval()  # eval: BatchNorm takes a batch of one
    values = [in_channels * image_size * image_size]

    def count(_module, _inputs, output):
        if isinstance(output, torch.Tensor):
            values.append(output.numel())

    handles = [m.register_forward_hook(count) for m in model.modules() if not list(m.children())]
    try:
        model(torch.empty(1, in_channels, image_size, image_size, device="meta"))
    finally:
        for handle in handles:
            handle.remove()
    weights = sum(p.numel() for p in model.parameters())
    return batch_size * sum(values) * bytes_per_value + copies_of_weights * weights * 4


def available_memory(device: torch.device) -> int | None:
    """Bytes that ``device`` can still give: free GPU memory (``torch.cuda.mem_get_info``), or on the
    CPU the kernel's MemAvailable, capped by a container's cgroup limit; None when unknown."""
    if device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[0])
    if device.type != "cpu":
        return None
    found = []
    try:
        for line in open("/proc/meminfo", encoding="ascii"):
            if line.startswith("MemAvailable:"):
                found.append(int(line.split()[1]) * 1024)
        limit = open("/sys/fs/cgroup/memory.max", encoding="ascii").read().strip()
        used = int(open("/sys/fs/cgroup/memory.current", encoding="ascii").read())
        if limit.isdigit():
            found.append(int(limit) - used)
    except (OSError, ValueError):
        pass
    return min(found) if found else None


def check_training_memory(exp: Any, info: Any, device: torch.device, batch_size: int) -> None:
    """Raise ValueError, with :func:`training_memory`'s estimate, when ``exp`` (an Experiment)
    trains at an image size over MAX_IMAGE_SIZE, or needs more memory than ``device`` has free
    (:func:`available_memory`) for ``batch_size`` images per process. ``info``: its DatasetInfo,
    or None before an image folder is read (then only ``exp.image_size``'s bound is checked)."""
    if info is None:
        if exp.image_size > MAX_IMAGE_SIZE:
            raise ValueError(f"--image-size {exp.image_size} is over the limit of {MAX_IMAGE_SIZE} px "
                             "(mnv3.experiments.MAX_IMAGE_SIZE; the paper trains at 224).")
        return
    size = exp.image_size or info.image_size
    half = device.type == "cuda" and exp.amp != "off"
    need = training_memory(exp.arch, num_classes=info.num_classes, in_channels=info.in_channels, width_mult=exp.width_mult,
                           drop_first_strides=exp.drop_first_strides, image_size=size, batch_size=batch_size,
                           bytes_per_value=2 if half else 4, copies_of_weights=4 if exp.ema_decay else 3)  # fmt: skip
    estimate = (f"training at {size} px with {batch_size} images per step would need at least about {need / 2**30:,.1f} GiB "
                f"of {device.type} memory (the activations kept for the backward pass, estimated)")
    if size > MAX_IMAGE_SIZE:
        raise ValueError(f"--image-size {size} is over the limit of {MAX_IMAGE_SIZE} px (mnv3.experiments.MAX_IMAGE_SIZE; the "
                         f"paper trains at 224): {estimate}. Use a size up to {MAX_IMAGE_SIZE}, or 0 for the dataset's own {info.image_size}.")
    free = available_memory(device)
    if free is not None and need > free:
        raise ValueError(f"{estimate}, but {free / 2**30:,.1f} GiB are free. Lower --batch-size or --image-size.")


def _can_print(text: str, stream: Any) -> bool:
    try:
        text.encode(getattr(stream, "encoding", None) or "ascii")
        return True
    except (UnicodeEncodeError, LookupError):
        return False


def format_table(rows: list[dict[str, Any]], title: str = "", *, unicode: bool = True) -> str:
    """The rows as a fixed-width text table in the paper's column order, with totals and the MAC convention."""
    header = ("Input", "Operator", "exp size", "#out", "SE", "NL", "s", "params", "MACs")
    body = []
    for r in rows:
        label = r["input"] if unicode else r["input"].replace("²", "^2").replace("×", "x")
        body.append(
            (
                label,
                r["operator"],
                "-" if r["exp_size"] is None else str(r["exp_size"]),
                str(r["out"]),
                ("✓" if unicode else "yes") if r["se"] else "-",
                r["nl"] or "-",
                str(r["stride"]),
                f"{r['params']:,}",
                f"{r['macs']:,}",
            )
        )
    t = totals(rows)
    widths = [max(len(h), *(len(b[i]) for b in body)) for i, h in enumerate(header)]
    right = {2, 3, 6, 7, 8}  # numeric columns

    def line(cells):
        return "  ".join(c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(cells, widths)))

    out = [title] if title else []
    out += [line(header), line(["-" * w for w in widths])]
    out += [line(b) for b in body]
    out.append(line(["-" * w for w in widths]))
    out.append(f"Total: {t['params']:,} parameters, {t['macs']:,} MACs ({t['macs'] / 1e6:.2f}M)")
    out.append(MAC_CONVENTION)
    return "\n".join(out)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m mnv3.summary",
        description=(
            "Print MobileNetV3's architecture table (the paper's Tables 1 and 2) for a spec: per row the "
            "input shape, operator, expansion size, output channels, SE, nonlinearity, stride, parameters "
            "and MACs, measured with a forward pass on a 1 x C x S x S input. " + MAC_CONVENTION
        ),
        epilog=(
            "examples:\n"
            "  python -m mnv3.summary small                      # Table 2, ImageNet (224x224, 1000 classes)\n"
            "  python -m mnv3.summary large --width-mult 0.75    # Large 0.75\n"
            "  python -m mnv3.summary small --num-classes 10 --in-channels 1 --input-size 28   # MNIST\n"
            "  python -m mnv3.summary large --num-classes 10 --input-size 32 --drop-first-strides 2  # CIFAR-10\n"
            "  python -m mnv3.summary my_spec.json               # a spec file of your own (see mnv3/specs/)"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("arch", help="'small', 'large' or the path to a spec JSON file")
    parser.add_argument("--input-size", type=int, default=224, help=f"input height and width in pixels, 1 to {MAX_IMAGE_SIZE} (default 224)")
    parser.add_argument("--num-classes", type=int, default=1000, help="classifier outputs (default 1000)")
    parser.add_argument("--in-channels", type=int, default=3, help="input channels: 3 for colour, 1 for MNIST (default 3)")
    parser.add_argument("--width-mult", type=float, default=1.0, help="the paper's width multiplier (default 1.0)")
    parser.add_argument(
        "--drop-first-strides",
        type=int,
        default=0,
        help="set the first N stride-2 layers (stem first) to stride 1, for small images (default 0)",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        model = build_model(
            args.arch,
            num_classes=args.num_classes,
            in_channels=args.in_channels,
            width_mult=args.width_mult,
            drop_first_strides=args.drop_first_strides,
        )
        rows = summarize(model, args.input_size)
    except ValueError as err:  # SpecError is a ValueError
        print(f"python -m mnv3.summary: error: {err}", file=sys.stderr)
        return 2
    except OSError as err:
        print(f"python -m mnv3.summary: error: {os_error_line(err)}", file=sys.stderr)
        return 2
    title = (
        f"{model.spec.name} (width {args.width_mult:g}, {args.num_classes} classes, "
        f"input {args.input_size}x{args.input_size}x{args.in_channels}, drop_first_strides {args.drop_first_strides})"
    )
    table = format_table(rows, title)
    if not _can_print(table, sys.stdout):
        table = format_table(rows, title, unicode=False)
    try:
        print(table, flush=True)
    except BrokenPipeError:  # e.g. `| head`: stop quietly, as the Python docs recommend
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    return 0


# Paper, Table 3 (224x224, 1000 classes, width 1.0): millions of parameters and multiply-adds.
PAPER_TOTALS = {"small": {"params": 2.5e6, "macs": 56e6}, "large": {"params": 5.4e6, "macs": 219e6}}


def architecture_table(arch: str, *, input_size: int = 224, num_classes: int = 1000, in_channels: int = 3, drop_first_strides: int = 0):
    """The paper's table for ``arch``, from its JSON spec: one row per layer with parameters and MACs."""
    import pandas as pd


    model = build_model(arch, num_classes=num_classes, in_channels=in_channels, drop_first_strides=drop_first_strides)
    rows = summarize(model, input_size)
    frame = pd.DataFrame(rows)[["input", "operator", "exp_size", "out", "se", "nl", "stride", "params", "macs"]]
    frame = frame.rename(columns={"exp_size": "exp size", "out": "#out", "se": "SE", "nl": "NL", "stride": "s", "macs": "MACs"})
    frame["exp size"] = [("-" if v is None else str(v)) for v in (r["exp_size"] for r in rows)]
    frame["SE"] = ["✓" if r["se"] else "-" for r in rows]
    frame["NL"] = [r["nl"] or "-" for r in rows]
    frame.index = range(1, len(frame) + 1)
    frame.index.name = "row"
    return frame


def totals_against_references(input_size: int = 224, num_classes: int = 1000):
    """Parameters and MACs of mnv3's Small and Large against the paper and torchvision.

    The paper and the model cards give totals at 224x224 with 1000 classes only; their columns are
    None for other settings. Parameters are counts, MACs millions.
    """
    import pandas as pd
    import torchvision
    from torchvision.models import MobileNet_V3_Large_Weights, MobileNet_V3_Small_Weights


    weights = {"small": MobileNet_V3_Small_Weights.IMAGENET1K_V1, "large": MobileNet_V3_Large_Weights.IMAGENET1K_V1}
    builders = {"small": torchvision.models.mobilenet_v3_small, "large": torchvision.models.mobilenet_v3_large}
    rows = []
    for arch in ("small", "large"):
        t = totals(summarize(build_model(arch, num_classes=num_classes), input_size))
        tv = builders[arch](num_classes=num_classes)  # no weights: nothing is downloaded
        meta = weights[arch].meta
        rows.append(
            {
                "model": f"MobileNetV3-{arch.capitalize()} 1.0",
                "mnv3 parameters": t["params"],
                "torchvision parameters (built)": sum(p.numel() for p in tv.parameters()),
                "torchvision parameters (model card)": meta["num_params"] if num_classes == 1000 else None,
                "paper parameters": f"{PAPER_TOTALS[arch]['params'] / 1e6:.1f}M" if num_classes == 1000 else None,
                "mnv3 MACs (M)": round(t["macs"] / 1e6, 2),
                "torchvision MACs (M, model card)": round(meta["_ops"] * 1e3, 1) if num_classes == 1000 and input_size == 224 else None,
                "paper MACs (M)": round(PAPER_TOTALS[arch]["macs"] / 1e6) if num_classes == 1000 and input_size == 224 else None,
            }
        )
    return pd.DataFrame(rows).set_index("model")


def experiment_architectures(profile: str = "quick"):
    """Parameters and MACs of each experiment's model at its image size (10 classes)."""
    import pandas as pd

    from .data import DATASET_NAMES, dataset_info
    from .experiments import EXPERIMENTS, get_experiment

    rows = []
    for name in EXPERIMENTS:
        exp = get_experiment(name, profile)
        info = dataset_info(exp.dataset)
        size = exp.image_size or info.image_size
        model = build_model(exp.arch, num_classes=info.num_classes, in_channels=info.in_channels,
                            width_mult=exp.width_mult, drop_first_strides=exp.drop_first_strides)
        t = totals(summarize(model, size))
        rows.append({"experiment": name, "dataset": DATASET_NAMES.get(exp.dataset, exp.dataset), "arch": exp.arch,
                     "input": f"{size}x{size}x{info.in_channels}", "drop_first_strides": exp.drop_first_strides,
                     "parameters": t["params"], "MACs": t["macs"]})
    return pd.DataFrame(rows).set_index("experiment")


def torchvision_equivalence(arch: str, *, num_classes: int = 1000, input_size: int = 224, batch: int = 2, seed: int = 0) -> dict[str, Any]:
    """Check, live, that mnv3 and torchvision build the same network.

    A torchvision model with random weights (and BatchNorm statistics) is converted with
    ``from_torchvision``; both run the same random batch in eval mode. Also checks the state-dict
    keys and shapes, the parameter counts, and the way back through ``to_torchvision``.
    """
    import torch
    import torchvision

    from .torchvision_compat import from_torchvision, randomize_weights_, to_torchvision

    builders = {"small": torchvision.models.mobilenet_v3_small, "large": torchvision.models.mobilenet_v3_large}
    torch.manual_seed(seed)
    tv = builders[arch](num_classes=num_classes).eval()
    randomize_weights_(tv, seed)
    ours = from_torchvision(tv).eval()
    fresh = build_model(arch, num_classes=num_classes)
    x = torch.randn(batch, 3, input_size, input_size, generator=torch.Generator().manual_seed(seed + 1))
    with torch.inference_mode():
        y_tv, y_ours = tv(x), ours(x)
        y_back = to_torchvision(ours).eval()(x)
    tv_shapes = {k: tuple(v.shape) for k, v in tv.state_dict().items()}
    fresh_shapes = {k: tuple(v.shape) for k, v in fresh.state_dict().items()}
    return {
        "arch": arch,
        "same state-dict keys and shapes": tv_shapes == fresh_shapes,
        "parameters (mnv3)": sum(p.numel() for p in fresh.parameters()),
        "parameters (torchvision)": sum(p.numel() for p in tv.parameters()),
        "max |output difference|": float((y_tv - y_ours).abs().max()),
        "max |difference| after to_torchvision": float((y_tv - y_back).abs().max()),
        "output scale (max |logit|)": float(y_tv.abs().max()),
    }


if __name__ == "__main__":
    sys.exit(main())
