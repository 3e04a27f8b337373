"""MACO step cost against its floor, the bare forward+backward of the same crop batch.

Everything MACO adds around the network (phase -> image FFT, crops, noise,
optimizer, transparency) should cost under a twentieth of the network itself:
target step_over_floor <= 1.05 at 1 and 8 units per run (issue 28). Also units per
minute for a full 256-step run at 1, 4 and 8 units per run. Every MACO step
is followed by one floor step on a batch of the same shape, timed apart; the
ratio is the median of the per-step ratios, so a busy machine slows both
alike.

``aten_ops``: the operators one step of one unit runs (torch.profiler, the proxy
for GPU kernel launches), ours against Horama's MACO step on the same network,
crops and sizes (``ratio``: ours over Horama's; ``floor``: the network's own share of
both). Counted: the innermost ATen and torchvision operators that compute
something (views, allocations and host-side scalar bookkeeping are not launches),
a step's count being the difference between a 4-step and a 2-step run over 2. On
the CPU, ``maco_gpu_crops`` is our step with the crops that a GPU runs
(``roi_align``, one operator each way) in place of the CPU's separable form.
Last line: one JSON object.

    python benchmarks/bench_maco.py [--model resnet18] [--device cuda] [--steps 21] [--threads N]
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch.profiler import ProfilerActivity, profile
from torchvision.ops import roi_align

os.environ.setdefault("MACO_OFFLINE", "1")

from maco import optimize as maco_optimize  # noqa: E402
from maco.models import load_model  # noqa: E402
from maco.optimize import maco, method_defaults  # noqa: E402
from maco.spectra import analytic_spectrum  # noqa: E402

# operators that launch nothing: views, allocations, host-side conversions
NOT_LAUNCHES = {f"aten::{name}" for name in (
    "empty empty_strided empty_like new_empty new_empty_strided as_strided as_strided_ view _reshape_alias "
    "_unsafe_view reshape resize_ resolve_conj resolve_neg detach detach_ lift_fresh result_type promote_types to "
    "flatten alias unsqueeze squeeze expand expand_as permute transpose t mT numpy_T select slice narrow unbind "
    "split chunk view_as view_as_real view_as_complex _conj conj real imag scalar_tensor set_ is_nonzero item "
    "contiguous").split()}


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def floor_step(model, batch: torch.Tensor, units: int) -> float:
    """Forward and backward (to the input) of a batch shaped like one MACO step's crops."""
    batch.grad = None
    synchronize(model.device)
    start = time.perf_counter()
    model(batch)[:, :units].sum().backward()
    synchronize(model.device)
    return time.perf_counter() - start


def paired_step_times(model, units: int, crops: int, size: int, steps: int) -> tuple[list[float], list[float]]:
    """Each MACO step is followed by one floor step, timed apart, so a load change hits both alike."""
    batch = torch.rand(units * crops, 3, model.input_size, model.input_size, device=model.device, requires_grad=True)
    maco_times, floor_times = [], []
    resumed = None  # when the current MACO step started (after the previous floor step)

    def callback(step, phase, values):
        nonlocal resumed
        synchronize(model.device)
        if resumed is not None:  # the first step also holds the set-up: not timed
            maco_times.append(time.perf_counter() - resumed)
            floor_times.append(floor_step(model, batch, units))
        resumed = time.perf_counter()

    maco(model, list(range(units)), steps=steps + 1, size=size, crops=crops, progress=False, callback=callback)
    return maco_times, floor_times


def counted_ops(run) -> int:
    """Operators that launch work in ``run()``: innermost ones, and every torchvision op and ATen backward kernel
    (they launch their own besides the zero-fill inside), less those whose every input is a 0-dim scalar."""
    with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
        run()

    def launches(event) -> bool:
        return (event.name.startswith(("aten::", "torchvision::")) and event.name not in NOT_LAUNCHES
                and not (event.input_shapes and all(shape == [] for shape in event.input_shapes
                                                   if isinstance(shape, list))))

    def count(event) -> int:
        below = sum(count(child) for child in event.cpu_children)
        own = launches(event) and (below == 0 or event.name.startswith("torchvision::") or "backward" in event.name)
        return below + own

    return sum(count(event) for event in prof.events() if event.cpu_parent is None)


def ops_per_step(run_steps) -> float:
    """One step's operators: a 4-step run less a 2-step one, over 2 (set-up and the final render cancel)."""
    return (counted_ops(lambda: run_steps(4)) - counted_ops(lambda: run_steps(2))) / 2


def roi_align_crops(images: torch.Tensor, boxes: torch.Tensor, size: int) -> torch.Tensor:
    """The crops a GPU runs (``maco.transforms.crop_and_resize`` off the CPU)."""
    return roi_align(images, boxes.to(images), output_size=size, spatial_scale=1.0, sampling_ratio=-1, aligned=True)


def aten_ops(model, crops: int, size: int) -> dict[str, float]:
    """Operators per step of one unit: ours, Horama's (same network, crops, sizes) and the network's floor."""
    import horama

    def ours(steps: int) -> None:
        maco(model, [0], steps=steps, size=size, crops=crops, progress=False, spectrum=analytic_spectrum(size))

    def horama_step(steps: int) -> None:
        horama.maco(lambda images: model(images)[:, 0].mean(), total_steps=steps, learning_rate=1.0,
                    image_size=size, model_input_size=model.input_size, crops_per_iteration=crops,
                    values_range=(0.0, 1.0), device=str(model.device))

    def floor(steps: int) -> None:
        batch = torch.rand(crops, 3, model.input_size, model.input_size, device=model.device, requires_grad=True)
        for _ in range(steps):
            floor_step(model, batch, 1)

    counts = {"maco": ops_per_step(ours)}
    if model.device.type == "cpu":
        with _replaced(maco_optimize, "crop_and_resize", roi_align_crops):
            counts["maco_gpu_crops"] = ops_per_step(ours)
    # Horama reads its spectrum from the working directory: the counts do not depend on its values
    with tempfile.TemporaryDirectory() as workdir, contextlib.chdir(workdir), \
            contextlib.redirect_stderr(open(os.devnull, "w")):
        np.save(Path(workdir) / "spectrum_decorrelated.npy", analytic_spectrum(size).magnitude.numpy())
        counts["horama"] = ops_per_step(horama_step)
    counts["floor"] = ops_per_step(floor)
    counts["ratio"] = round(counts["maco"] / counts["horama"], 3)
    return counts


@contextlib.contextmanager
def _replaced(module, name: str, value):
    original = getattr(module, name)
    setattr(module, name, value)
    try:
        yield
    finally:
        setattr(module, name, original)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="resnet18")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    defaults = method_defaults("maco")
    parser.add_argument("--crops", type=int, default=defaults["crops"])
    parser.add_argument("--size", type=int, default=defaults["size"])
    parser.add_argument("--steps", type=int, default=21, help="measured steps per configuration")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (default: torch's choice)")
    args = parser.parse_args()

    if args.threads:
        torch.set_num_threads(args.threads)
    model = load_model(args.model, weights="random", device=args.device)
    paired_step_times(model, 1, args.crops, args.size, 2)  # warm-up
    ratios, units_per_min, step_seconds = {}, {}, {}
    for units in (1, 4, 8):
        maco_times, floor_times = paired_step_times(model, units, args.crops, args.size, args.steps)
        step, floor = statistics.median(maco_times), statistics.median(floor_times)
        ratio = statistics.median(m / f for m, f in zip(maco_times, floor_times))
        ratios[str(units)] = round(ratio, 3)
        step_seconds[str(units)] = {"maco": round(step, 4), "floor": round(floor, 4)}
        units_per_min[str(units)] = round(units * 60 / (step * 256), 3)
        print(f"{units} unit(s)/run: maco step {step:.4f} s, floor {floor:.4f} s, ratio {ratio:.3f}, "
              f"{units_per_min[str(units)]} units/min at 256 steps", flush=True)
    operators = aten_ops(model, args.crops, args.size)
    print(f"operators per step of one unit: {operators}", flush=True)
    print(json.dumps({
        "step_over_floor": ratios,
        "aten_ops": operators,
        "units_per_min": units_per_min,
        "step_seconds": step_seconds,
        "model": f"{args.model} (random weights)",
        "crops_per_unit": args.crops,
        "size": args.size,
        "device": str(model.device),
        "threads": torch.get_num_threads(),
    }))


if __name__ == "__main__":
    main()
