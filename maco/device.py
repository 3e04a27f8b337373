"""Running on an accelerator: per-device constants, precision, determinism, and their provenance.

- ``on_device``: a constant (a colour matrix, a table of choices) as a tensor
  on the working device, made once. Rebuilding it at every step would be a
  host-to-device copy per step, which blocks on CUDA.
- ``DTYPES`` / ``autocast``: the compute precision of the network. bfloat16
  runs the network under ``torch.autocast``; parameters, objectives, FFTs and
  optimiser state stay float32 (the callers keep them outside the context).
- ``use_deterministic``: deterministic algorithms where the ops have them;
  an op without one warns, naming itself (torch's ``warn_only`` mode).
- ``runtime_provenance``: what a result depends on beyond the code: device
  kind and name, torch/CUDA/cuDNN versions, dtype, TF32 and determinism.
"""
from __future__ import annotations

import contextlib
import os
import platform
from pathlib import Path

import torch

from maco.options import DTYPE_NAMES

DTYPES = dict(zip(DTYPE_NAMES, (torch.float32, torch.bfloat16)))

# cuBLAS needs a fixed workspace to be deterministic; read when cuBLAS starts
CUBLAS_DETERMINISTIC_WORKSPACE = ":4096:8"

# (id of the constant, device, dtype) -> (the constant, its tensor): keyed by identity, since
# tensors compare element-wise; the constant is kept to check that the id is still its own
_CONSTANTS: dict[tuple, tuple[object, torch.Tensor]] = {}


class DeviceError(ValueError):
    """A device that this machine does not have; the message says which ones it has."""


def resolve_device(name: str | torch.device) -> torch.device:
    """``name`` as a torch device, checked against this machine before any model is loaded."""
    try:
        device = torch.device(name)
    except RuntimeError:
        raise DeviceError(f"device {str(name)!r} is not a torch device name (e.g. cpu, cuda, cuda:1)") from None
    if device.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise DeviceError(f"device {device}: no CUDA GPU is available here; use --device cpu")
        if device.index is not None and device.index >= count:
            raise DeviceError(f"device {device}: this machine has {count} CUDA GPU(s), cuda:0..cuda:{count - 1}")
    elif device.type not in ("cpu", "meta"):
        raise DeviceError(f"device {device}: only cpu and cuda are supported")
    return device


def on_device(value: torch.Tensor | tuple[float, ...], device: torch.device | str,
              dtype: torch.dtype | None = None) -> torch.Tensor:
    """``value`` (a module-level constant: a CPU tensor or a tuple) on ``device``, made once per device and dtype."""
    key = (id(value), torch.device(device), dtype)
    cached = _CONSTANTS.get(key)
    if cached is not None and cached[0] is value:
        return cached[1]
    # inference_mode(False): a constant first made inside inference mode must still be usable by autograd
    with torch.inference_mode(False):
        tensor = torch.as_tensor(value, device=device, dtype=dtype)
    if type(tensor) is torch.Tensor:  # never keep a tracing subclass (FakeTensor) for later real runs
        _CONSTANTS[key] = (value, tensor)
    return tensor


def autocast(device: torch.device | str, dtype: torch.dtype) -> contextlib.AbstractContextManager:
    """The network's forward in ``dtype``: autocast for bfloat16, nothing for float32."""
    if dtype == torch.float32:
        return contextlib.nullcontext()
    return torch.autocast(torch.device(device).type, dtype=dtype)


def at_least_float32(tensor: torch.Tensor) -> torch.Tensor:
    """bfloat16 (autocast) activations back to float32, for objectives; float32/float64 unchanged."""
    return tensor.to(torch.promote_types(tensor.dtype, torch.float32))


def use_deterministic() -> None:
    """Deterministic algorithms from now on (this process), at a cost in speed on CUDA (docs/gpu.md).

    cuDNN picks deterministic convolution algorithms and stops autotuning.
    maco's own crops and Lucid resampling switch to deterministic
    implementations (``maco.transforms``). An op of a network with no
    deterministic implementation on this device warns once, naming itself,
    and runs anyway: raising would stop a run at the first such op and hide
    the others (``benchmarks/gpu_check.py`` lists them and says whether two
    runs were bitwise equal).
    """
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", CUBLAS_DETERMINISTIC_WORKSPACE)
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.backends.cudnn.deterministic = True
    torch.backends.cudnn.benchmark = False


def device_name(device: torch.device | str) -> str:
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    if device.type == "cpu":
        return _cpu_model()
    return device.type


def _cpu_model() -> str:
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text(errors="replace").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def runtime_provenance(device: torch.device | str, dtype: torch.dtype = torch.float32) -> dict:
    """The settings a run's numbers depend on, for run.json and the bundle provenance."""
    device = torch.device(device)
    cuda = device.type == "cuda"
    return {
        "device": str(device),
        "device_kind": device.type,
        "device_name": device_name(device),
        "dtype": str(dtype).removeprefix("torch."),
        "torch": torch.__version__,
        "cuda": torch.version.cuda if cuda else None,
        "cudnn": torch.backends.cudnn.version() if cuda else None,
        "cpu_threads": torch.get_num_threads(),
        "tf32": {
            # float32 matmuls and convolutions may round their inputs to TF32 on Ampere and later
            "matmul": torch.get_float32_matmul_precision() != "highest",
            "cudnn_conv": bool(torch.backends.cudnn.allow_tf32),
        },
        "deterministic": {
            "algorithms": torch.are_deterministic_algorithms_enabled(),
            "warn_only": torch.is_deterministic_algorithms_warn_only_enabled(),
            "cudnn_deterministic": bool(torch.backends.cudnn.deterministic),
            "cudnn_benchmark": bool(torch.backends.cudnn.benchmark),
        },
    }
