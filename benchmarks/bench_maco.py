"""MACO step cost against its floor, the bare forward+backward of the same crop batch.

Everything MACO adds around the network (phase -> image FFT, crops, noise,
optimizer, transparency) should cost under a tenth of the network itself:
target step_over_floor <= 1.10 at 1 and 8 units per run. Also units per
minute for a full 256-step run at 1, 4 and 8 units per run. Every MACO step
is followed by one floor step on a batch of the same shape, timed apart; the
ratio is the median of the per-step ratios, so a busy machine slows both
alike. Last line: one JSON object.

    python benchmarks/bench_maco.py [--model resnet18] [--device cuda] [--steps 21] [--threads N]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import time

import torch

os.environ.setdefault("MACO_OFFLINE", "1")

from maco.models import load_model  # noqa: E402
from maco.optimize import maco, method_defaults  # noqa: E402


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
    print(json.dumps({
        "step_over_floor": ratios,
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
