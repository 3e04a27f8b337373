"""The first run on a GPU: speed, syncs, CPU agreement and determinism, in one JSON line (~10 min at most).

    python benchmarks/gpu_check.py            # on a machine with CUDA; prints progress, then one JSON line
    python benchmarks/gpu_check.py --smoke    # seconds on the CPU (the test suite runs it)

For resnet50, vgg16 and vit_b16 (pretrained weights when the cache has them,
else random weights, said so in the output):
- MACO and Olah units per minute (256 / 512 steps) at 1 and 8 units per run,
  float32 and bfloat16, from the median step time; MACO's step over floor
  (bench_maco.py's paired measure: the bare forward+backward of the same batch);
- peak GPU memory per network;
- ``sync_free``: the steps after the first run under
  ``torch.cuda.set_sync_debug_mode("error")``, so any host-device sync fails
  and is reported, for MACO, Olah and the occlusion map;
- ``agreement``: one MACO step (same phase and crops) on the CPU and on the
  GPU: image, objective and phase gradient, against ``AGREEMENT_TOLERANCE``;
- ``occlusion``: occlusion positions/s against forward images/s (bench_stimuli.py);
- ``determinism``: two runs with the same seed, bitwise equal or not, by
  default and under ``--deterministic`` (maco.device.use_deterministic), what
  the switch costs (ratio of run times), and the ops torch names as having no
  deterministic implementation on this device.
"""
from __future__ import annotations

import copy
import json
import statistics
import sys
import time
import warnings

import click
import torch
from bench_maco import paired_step_times, synchronize
from bench_stimuli import occlusion_vs_forward

from maco.device import DTYPES, DeviceError, resolve_device, runtime_provenance, use_deterministic
from maco.models import ModelError, load_model
from maco.optimize import maco, olah
from maco.parameterizations import SpectralLayout, maco_image, maco_init
from maco.spectra import resolve_spectrum
from maco.transforms import crop_and_resize, maco_crop_boxes
from stimuli.models import StudyModel
from stimuli.occlusion import occluder_side, occlusion_map

NETWORKS = ("resnet50", "vgg16", "vit_b16")
# CPU vs CUDA, one MACO step in float32: FFTs differ in rounding only; cuDNN convolutions
# may use TF32 (10-bit mantissa) by default, which sets the objective and gradient tolerances
AGREEMENT_TOLERANCE = {"image_max_abs": 1e-4, "objective_rel": 1e-2, "gradient_rel_l2": 5e-2}


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def load_network(name: str, device: torch.device, smoke: bool):
    """Pretrained weights from the cache (or the hub), else random weights and the reason."""
    if not smoke:
        try:
            return load_model(name, "pretrained", device), None
        except ModelError as error:
            return load_model(name, "random", device), f"random weights: {error}"
    return load_model(name, "random", device), "random weights: --smoke"


def olah_step_seconds(model, units: int, steps: int) -> list[float]:
    """Olah's per-step wall times (the first step, which holds the set-up, left out)."""
    times, last = [], None

    def callback(step, parameters, values):
        nonlocal last
        synchronize(model.device)
        if last is not None:
            times.append(time.perf_counter() - last)
        last = time.perf_counter()

    olah(model, list(range(units)), steps=steps + 1, progress=False, callback=callback)
    return times


def speed(model, units: int, settings: dict) -> dict:
    maco_times, floor_times = paired_step_times(model, units, settings["crops"], settings["size"], settings["steps"])
    olah_times = olah_step_seconds(model, units, settings["steps"])
    return {
        "maco_units_per_min": round(units * 60 / (statistics.median(maco_times) * 256), 2),
        "maco_step_over_floor": round(statistics.median(m / f for m, f in zip(maco_times, floor_times)), 3),
        "olah_units_per_min": round(units * 60 / (statistics.median(olah_times) * 512), 2),
    }


def sync_errors(model, settings: dict) -> dict:
    """None per loop when its steps (after the first) never wait for the GPU, else the first sync's error."""
    if model.device.type != "cuda":
        return {"maco": "not checked on cpu", "olah": "not checked on cpu", "occlusion": "not checked on cpu"}
    steps = 4

    def guard(step, parameters, values):  # from the end of step 0 to the end of the last step
        torch.cuda.set_sync_debug_mode("error" if step < steps - 1 else "default")

    def occlusion():
        size = model.input_size
        torch.cuda.set_sync_debug_mode("error")
        occlusion_map(StudyModel(model), torch.rand(3, size, size, device=model.device), 0,
                      occluder_side(size, 0.4), 8, 64)

    runs = {"maco": lambda: maco(model, [0, 1], steps=steps, size=settings["size"], crops=settings["crops"],
                                 progress=False, callback=guard),
            "olah": lambda: olah(model, [0, 1], steps=steps, progress=False, callback=guard),
            "occlusion": occlusion}
    result = {}
    for name, run in runs.items():
        try:
            run()
            result[name] = None
        except RuntimeError as error:
            result[name] = str(error).splitlines()[0]
        finally:
            torch.cuda.set_sync_debug_mode("default")
    return result


def one_maco_step(model, phase: torch.Tensor, carrier: torch.Tensor, magnitude: torch.Tensor, boxes: torch.Tensor,
                  size: int):
    """Image, objective (unit 0, mean over the crops) and phase gradient of one MACO step, on the model's device."""
    device = model.device
    phase = phase.to(device).requires_grad_()
    layout = SpectralLayout.of(size, size, device)
    image = maco_image(phase, carrier.to(device), layout.even(magnitude.to(device)), layout)
    value = model(crop_and_resize(image, boxes.to(device), model.input_size))[:, 0].mean()
    value.backward()
    return image.detach().cpu(), value.item(), phase.grad.cpu()


def agreement(model, settings: dict) -> dict:
    """One MACO step on this device and on a CPU copy of the model, from the same phase and crops."""
    size, generator = settings["size"], torch.Generator().manual_seed(0)
    phase, carrier = maco_init(1, size, size, generator)
    boxes = maco_crop_boxes(1, settings["crops"], size, size, generator)
    magnitude = resolve_spectrum(size).magnitude
    image, value, grad = one_maco_step(model, phase, carrier, magnitude, boxes, size)
    cpu_image, cpu_value, cpu_grad = one_maco_step(copy.deepcopy(model).to("cpu"), phase, carrier, magnitude, boxes, size)
    measured = {
        "image_max_abs": (image - cpu_image).abs().max().item(),
        "objective_rel": abs(value - cpu_value) / max(abs(cpu_value), 1e-12),
        "gradient_rel_l2": ((grad - cpu_grad).norm() / cpu_grad.norm().clamp(min=1e-30)).item(),
    }
    return {"versus": f"{model.device} against cpu", "tolerance": AGREEMENT_TOLERANCE,
            **{k: float(f"{v:.3g}") for k, v in measured.items()},
            "within_tolerance": all(measured[k] <= AGREEMENT_TOLERANCE[k] for k in measured)}


def determinism(model, settings: dict) -> dict:
    """Same seed twice, by default and deterministic; the switch's cost as a ratio of run times, and
    the ops that have no deterministic implementation here (torch warns, naming them)."""
    def run(method):
        synchronize(model.device)
        start = time.perf_counter()
        if method == "maco":
            images = maco(model, [0, 1], steps=settings["steps"], size=settings["size"], crops=settings["crops"],
                          progress=False)
        else:
            images = olah(model, [0, 1], steps=settings["steps"], progress=False)
        synchronize(model.device)
        return torch.stack([v.image for v in images]), time.perf_counter() - start

    result = {}
    for method in ("maco", "olah"):
        (first, default_s), (again, _) = run(method), run(method)
        result[method] = {"default_bitwise_equal": torch.equal(first, again)}
        use_deterministic()
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                (first, deterministic_s), (again, _) = run(method), run(method)
        finally:
            torch.use_deterministic_algorithms(False)
            torch.backends.cudnn.deterministic = False
        nondeterministic = sorted({str(w.message).split(" does not have a deterministic")[0] for w in caught
                                   if "deterministic" in str(w.message)})
        result[method].update(deterministic_bitwise_equal=torch.equal(first, again),
                              deterministic_cost=round(deterministic_s / default_s, 2),
                              nondeterministic_ops=nondeterministic)
    return result


@click.command()
@click.option("--device", default="cuda", show_default=True, help="the GPU to check (cpu runs everything, slowly)")
@click.option("--steps", type=click.IntRange(min=2), default=10, show_default=True, help="measured steps per setting")
@click.option("--smoke", is_flag=True, help="seconds on the CPU with a tiny random network: checks the script runs")
def main(device: str, steps: int, smoke: bool) -> None:
    started = time.perf_counter()
    try:
        device = resolve_device("cpu" if smoke else device)
    except DeviceError as error:
        raise click.ClickException(f"{error} (or --smoke: a few seconds on the CPU)") from None
    if smoke:
        torch.set_num_threads(1)  # a shared CI machine: threads contending for cores make it crawl
    networks = {"test_resnet": 32} if smoke else dict.fromkeys(NETWORKS)  # name -> input size override
    settings = {"steps": 2 if smoke else steps, "size": 64 if smoke else 512, "crops": 2 if smoke else 6}
    unit_counts = (1, 2) if smoke else (1, 8)
    report = {"smoke": smoke, "runtime": runtime_provenance(device), "settings": settings, "networks": {}}
    for name, input_size in networks.items():
        model, note = load_network(name, device, smoke)
        if input_size:
            model.input_size = input_size
        log(f"{name}: {model.weights}")
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        entry = {"weights": note or model.weights}
        for dtype_name, dtype in DTYPES.items():
            model.compute_dtype = dtype
            for units in unit_counts:
                entry[f"{dtype_name}_units{units}"] = figures = speed(model, units, settings)
                log(f"  {dtype_name}, {units} unit(s)/run: {figures}")
        model.compute_dtype = torch.float32
        entry["peak_memory_mib"] = (round(torch.cuda.max_memory_allocated(device) / 2**20)
                                    if device.type == "cuda" else None)
        entry["sync_errors"] = sync_errors(model, settings)
        entry["occlusion"] = occlusion_vs_forward(StudyModel(model), stride=8 if smoke else 2,
                                                  batch=16 if smoke else 256, repeats=1 if smoke else 3)
        log(f"  syncs: {entry['sync_errors']}; occlusion: {entry['occlusion']}")
        entry["agreement"] = agreement(model, settings)
        entry["determinism"] = determinism(model, settings)
        log(f"  agreement: {entry['agreement']}\n  determinism: {entry['determinism']}")
        report["networks"][name] = entry
        del model
        if device.type == "cuda":
            torch.cuda.empty_cache()
    report["seconds"] = round(time.perf_counter() - started, 1)
    print(json.dumps(report))


if __name__ == "__main__":
    main()
