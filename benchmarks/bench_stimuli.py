"""Benchmark the stimulus generator's two hot loops.

- occlusion_vs_forward: occlusion positions evaluated per second (masked
  batches built on the device, stage 2) divided by the bare forward
  throughput of the same model on as many images in the same batches
  (so a short last batch costs both alike). Target >= 0.9.
- refs_per_min: reference images per minute from maco.optimize.maco, with
  all units in one run (batched) and with one run per unit.

The last printed line is one JSON object. Random weights (speed does not
depend on them). Example: python benchmarks/bench_stimuli.py --model resnet50 --size 224
``--smoke``: a few seconds on the CPU, run by the test suite so that the script never rots.
"""
from __future__ import annotations

import json
import time

import click
import torch

from maco.device import device_name
from stimuli.config import NetworkConfig
from stimuli.models import StudyModel, load_study_model
from stimuli.occlusion import occluder_side, occlusion_map


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed(functions: list, device: torch.device, repeats: int) -> list[float]:
    """Best of `repeats` timings of each function after a warm-up, interleaved so that other
    load on a shared machine hits all of them alike."""
    for function in functions:
        function()  # warm-up (cudnn autotune, allocator)
    best = [float("inf")] * len(functions)
    for _ in range(repeats):
        for i, function in enumerate(functions):
            _sync(device)
            start = time.perf_counter()
            function()
            _sync(device)
            best[i] = min(best[i], time.perf_counter() - start)
    return best


def occlusion_vs_forward(model: StudyModel, stride: int, batch: int, repeats: int) -> dict:
    """Occlusion positions/s of one image against bare forward images/s, same batches."""
    device, size = model.device, model.input_size
    image = torch.rand(3, size, size, device=device)
    side = occluder_side(size, 0.4)
    positions = ((size - side) // stride + 1) ** 2
    batch_images = torch.rand(batch, 3, size, size, device=device)
    # the bare forward covers the same number of images as the occlusion map, in the same batches
    batches = [batch_images[:min(batch, positions - start)] for start in range(0, positions, batch)]
    forward_s, occlusion_s = _timed(
        [lambda: [model.logits(b) for b in batches],
         lambda: occlusion_map(model, image, 1, side, stride, batch)], device, repeats)
    return {"positions": positions, "batch": batch,
            "forward_images_per_s": round(positions / forward_s, 1),
            "occlusion_positions_per_s": round(positions / occlusion_s, 1),
            "occlusion_vs_forward": round(forward_s / occlusion_s, 3)}


def refs_per_min(model: StudyModel, units: int, steps: int, size: int, crops: int) -> dict:
    """MACO references per minute, all units in one run against one run per unit."""
    from maco.optimize import maco

    unit_list = list(range(units))
    settings = {"steps": steps, "size": size, "crops": crops, "seed": 0, "progress": False}
    batched_s, single_s = _timed(
        [lambda: maco(model.model, units=unit_list, **settings),
         lambda: [maco(model.model, units=[u], **settings) for u in unit_list]], model.device, repeats=1)
    return {"maco_steps": steps, "units_per_run": units, "refs_per_min": round(units / batched_s * 60, 2),
            "refs_per_min_unbatched": round(units / single_s * 60, 2),
            "refs_batching_speedup": round(single_s / batched_s, 2)}


@click.command()
@click.option("--model", "model_name", default=None, help="timm name (default: resnet50 on GPU, resnet18 on CPU)")
@click.option("--size", type=int, default=None, help="input size (default 224 on GPU, 96 on CPU)")
@click.option("--batch", type=int, default=None, help="batch size (default 256 on GPU, 32 on CPU)")
@click.option("--stride", type=int, default=None, help="occluder stride (default 2 on GPU, 8 on CPU)")
@click.option("--units", type=int, default=8, help="units optimised together for refs_per_min")
@click.option("--steps", type=int, default=None, help="MACO steps (default 32 on GPU, 4 on CPU)")
@click.option("--device", default=None)
@click.option("--smoke", is_flag=True, help="tiny settings on the CPU: checks that the script runs, measures nothing")
def main(model_name, size, batch, stride, units, steps, device, smoke) -> None:
    device = torch.device("cpu" if smoke else device or ("cuda" if torch.cuda.is_available() else "cpu"))
    gpu = device.type == "cuda"
    if smoke:
        torch.set_num_threads(1)  # a shared CI machine: threads contending for cores make it crawl
        model_name, size, batch, stride, units, steps = "test_resnet", 32, 16, 8, 2, 2
    model_name = model_name or ("resnet50" if gpu else "resnet18")
    size, batch = size or (224 if gpu else 96), batch or (256 if gpu else 32)
    stride, steps = stride or (2 if gpu else 8), steps or (32 if gpu else 4)
    if gpu:
        torch.backends.cudnn.benchmark = True
    network = NetworkConfig(key="bench", model=model_name, weights="random", units=tuple(range(units)),
                            input_size=size)
    model = load_study_model(network, seed=0, device=device)

    occlusion = occlusion_vs_forward(model, stride, batch, repeats=1 if smoke else 5 if gpu else 2)
    print(f"{model_name} @ {size}px on {device}: forward {occlusion['forward_images_per_s']:,.0f} img/s, "
          f"occlusion {occlusion['occlusion_positions_per_s']:,.0f} positions/s "
          f"({occlusion['positions']} positions, batch {batch})")
    crops = 8 if gpu else 2
    refs = refs_per_min(model, units, steps, size * 2, crops)
    print(f"maco ({steps} steps, {size * 2}px, {crops} crops): {refs['refs_per_min']:,.1f} refs/min with "
          f"{units} units per run, {refs['refs_per_min_unbatched']:,.1f} one unit per run")
    print(json.dumps({"device": device_name(device), "model": model_name, "input_size": size, "smoke": smoke,
                      **occlusion, **refs}))


if __name__ == "__main__":
    main()
