"""MACO step cost against its floor, the bare forward+backward of the same crop batch.

Everything MACO adds around the network (phase -> image FFT, crops, noise,
optimizer, transparency) should cost under a tenth of the network itself:
target step_over_floor <= 1.10 at 1 and 8 units per run. Also units per
minute for a full 256-step run at 1, 4 and 8 units per run. Floor and MACO
steps are measured in alternating blocks in one process, so a busy machine
slows both alike. Last line: one JSON object.

    python benchmarks/bench_maco.py [--model resnet18] [--device cuda] [--repeats 3]
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
from maco.optimize import maco  # noqa: E402


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def maco_step_times(model, units: int, crops: int, size: int, steps: int) -> list[float]:
    stamps = []

    def callback(step, phase, values):
        synchronize(model.device)
        stamps.append(time.perf_counter())

    maco(model, list(range(units)), steps=steps + 1, size=size, crops=crops, progress=False, callback=callback)
    return [b - a for a, b in zip(stamps, stamps[1:])]


def floor_step_times(model, units: int, crops: int, steps: int) -> list[float]:
    """Forward and backward (to the input) of a batch shaped like one MACO step's crops."""
    batch = torch.rand(units * crops, 3, model.input_size, model.input_size, device=model.device, requires_grad=True)
    times = []
    for _ in range(steps):
        synchronize(model.device)
        start = time.perf_counter()
        model(batch)[:, :units].sum().backward()
        synchronize(model.device)
        times.append(time.perf_counter() - start)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="resnet18")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--crops", type=int, default=6)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--steps", type=int, default=3, help="steps per measured block")
    parser.add_argument("--repeats", type=int, default=3, help="alternating blocks per configuration")
    args = parser.parse_args()

    model = load_model(args.model, weights="random", device=args.device)
    floor_step_times(model, 1, args.crops, 2)  # warm-up
    ratios, units_per_min, step_seconds = {}, {}, {}
    for units in (1, 4, 8):
        maco_times, floor_times = [], []
        for _ in range(args.repeats):
            maco_times += maco_step_times(model, units, args.crops, args.size, args.steps)
            floor_times += floor_step_times(model, units, args.crops, args.steps)
        step, floor = statistics.median(maco_times), statistics.median(floor_times)
        ratios[str(units)] = round(step / floor, 3)
        step_seconds[str(units)] = {"maco": round(step, 4), "floor": round(floor, 4)}
        units_per_min[str(units)] = round(units * 60 / (step * 256), 3)
        print(f"{units} unit(s)/run: maco step {step:.4f} s, floor {floor:.4f} s, ratio {step / floor:.3f}, "
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
