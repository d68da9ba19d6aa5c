"""How far each engine's float32 whole-U-Net pass is from the float64 result, at one and at two threads.

The figures behind ``tests/sparse/test_minkowski_parity.py::test_float32_whole_networks_differ_from_float64_
only_where_rounding_flips_a_relu``: for MinkUNet14 4D and MinkUNet34 3D on the test's room-like input,
the relative error (max |float32 − float64| / max |float64|) of the output, the input gradient and the worst
layer's weight gradient, for our engine (compiled kernels, and the PyTorch path) and MinkowskiEngine, with
batch norm in training mode (as in the test) and in eval mode — and the ReLU inputs whose sign differs from
the float64 pass's: an input within float32 rounding of 0 flips its ReLU mask between computation orders,
and one flipped row moves a layer's weight gradient by ~1e-2 relative, far above rounding.

Run with the ME venv::

    PYTHONPATH=$PWD .venv-minkowski/bin/python benchmarks/minkowski_float32_threads.py --markdown OUT.md

Without MinkowskiEngine the ME rows are left out. Prints a markdown table (and writes it with --markdown).
"""

from __future__ import annotations

import argparse
import os
import sys

import numpy as np
import torch

from fourdcontrast.machine import cpu_model
from fourdcontrast.models.benchmark import room_like_voxels
from fourdcontrast.models.resunet import MinkUNet14, MinkUNet34
from fourdcontrast.sparse import SparseTensor, minkowski_engine, native

NETWORKS = [(MinkUNet14, 4, 1500), (MinkUNet34, 3, 2500)]  # the parity test's networks and sizes


def sorted_pass(model_cls, dimension, coords, state, dtype, backend, train_bn=True):
    """Output, input gradient, weight gradients and every ReLU's input (float64, rows in coordinate order)
    of one forward+backward."""
    net = model_cls(3, 20, dimension=dimension, backend=backend)
    net.load_state_dict(state)
    net = net.to(dtype).train()
    if not train_bn:
        for module in net.modules():
            if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
                module.eval()
    relu_inputs = {}

    def keep(name):
        def hook(module, inputs):  # a block calls its ReLU twice: keys "name", "name#2"
            x = inputs[0]
            if not hasattr(x, "C"):  # the plain torch ReLU inside MinkowskiReLU
                return
            rows = torch.as_tensor(np.lexsort(x.C.long().numpy().T[::-1]))
            calls = sum(1 for key in relu_inputs if key.split("#")[0] == name)
            relu_inputs[name if calls == 0 else f"{name}#{calls + 1}"] = x.F.detach().double()[rows]
        return hook

    for name, module in net.named_modules():
        if type(module).__name__ in ("ReLU", "MinkowskiReLU"):
            module.register_forward_pre_hook(keep(name))
    feats = torch.randn(len(coords), 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    if backend == "minkowski":
        ME = minkowski_engine()  # noqa: N806
        x = ME.SparseTensor(feats.to(dtype).requires_grad_(True), torch.as_tensor(coords).int())
        x.F.retain_grad()
    else:
        x = SparseTensor(feats.to(dtype).requires_grad_(True), torch.as_tensor(coords).long())
    y = net(x)
    out_rows = torch.as_tensor(np.lexsort(y.C.long().numpy().T[::-1]))
    in_rows = torch.as_tensor(np.lexsort(x.C.long().numpy().T[::-1]))
    g = torch.randn(y.F.shape, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    (y.F[out_rows] * g.to(dtype)).sum().backward()
    return (y.F[out_rows].detach().double(), x.F.grad[in_rows].double(),
            {k: w.grad.double() for k, w in net.named_parameters()}, relu_inputs)


def relu_flips(relu_inputs: dict, truth: dict) -> dict[str, int]:
    """ReLU → number of entries whose mask (input > 0) differs from the float64 pass's."""
    flips = {name: int(((x > 0) != (truth[name] > 0)).sum()) for name, x in relu_inputs.items()
             if name in truth and x.shape == truth[name].shape}
    return {name: n for name, n in flips.items() if n}


def relative(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max()) / max(float(b.abs().max()), 1e-30)


def measure(threads_list=(1, 2)) -> list[dict]:
    """One row per network × batch-norm mode × engine × thread count."""
    engines = ["native", "pytorch"] + (["minkowski"] if minkowski_engine() is not None else [])
    rows = []
    for model_cls, dimension, n_points in NETWORKS:
        torch.manual_seed(0)
        state = model_cls(3, 20, dimension=dimension, backend="torch").state_dict()
        coords = room_like_voxels(np.random.default_rng(1), n_points, dimension)
        for train_bn in (True, False):
            torch.set_num_threads(1)
            truth = sorted_pass(model_cls, dimension, coords, state, torch.float64, "torch", train_bn)
            for threads in threads_list:
                torch.set_num_threads(threads)
                for engine in engines:
                    os.environ[native.ENV_VAR] = "0" if engine == "pytorch" else "1"
                    backend = "minkowski" if engine == "minkowski" else "torch"
                    y, dx, dw, relus = sorted_pass(model_cls, dimension, coords, state, torch.float32,
                                                   backend, train_bn)
                    errors = {k: relative(dw[k], truth[2][k]) for k in dw}
                    worst = max(errors, key=errors.get)
                    rows.append({"network": f"{model_cls.__name__} {dimension}D",
                                 "bn": "train" if train_bn else "eval", "threads": threads, "engine": engine,
                                 "output": relative(y, truth[0]),
                                 "input_grad": relative(dx, truth[1]), "weight_grad": errors[worst],
                                 "worst_layer": worst, "relu_flips": relu_flips(relus, truth[3])})
    os.environ.pop(native.ENV_VAR, None)
    return rows


def markdown(rows: list[dict]) -> str:
    cpu = cpu_model()
    me = minkowski_engine()
    lines = [
        "# float32 against float64, whole U-Nets, one and two threads",
        "",
        f"`benchmarks/minkowski_float32_threads.py` on {cpu} ({os.cpu_count()} vCPUs), "
        f"torch {torch.__version__}"
        + (f", MinkowskiEngine {me.__version__}" if me is not None else ", without MinkowskiEngine") + ". "
        "Relative error = max |float32 − float64| / max |float64| (float64 of our engine, one thread); "
        "weight gradient: the worst layer. `native`: our compiled kernels; `pytorch`: our PyTorch path "
        "(`FOURDCONTRAST_NATIVE=0`); batch norm in training mode (as in the parity test) or eval mode. "
        "`threads`: torch's thread count (ME's OpenBLAS GEMMs follow `OMP_NUM_THREADS` / "
        "`OPENBLAS_NUM_THREADS` of the environment instead). Last column: the ReLU inputs whose sign differs "
        "from the float64 pass's (`name#2`: a block's second call of its ReLU) — every error above ~4e-6 "
        "comes with one.",
        "",
        "| network | batch norm | threads | engine | output | input gradient | weight gradient "
        "| worst layer | ReLU masks flipped |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(f"| {r['network']} | {r['bn']} | {r['threads']} | {r['engine']} | {r['output']:.2e} | "
                     f"{r['input_grad']:.2e} | {r['weight_grad']:.2e} | `{r['worst_layer']}` | "
                     + (", ".join(f"`{k}` {v}" for k, v in r["relu_flips"].items()) or "none") + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--markdown", help="also write the table to this file")
    args = parser.parse_args(argv)
    text = markdown(measure())
    print(text)
    if args.markdown:
        from fourdcontrast.io.atomic import atomic_write_bytes

        atomic_write_bytes(args.markdown, text.encode())
    return 0


if __name__ == "__main__":
    sys.exit(main())
