"""GPU readiness checked on the CPU: no per-step host-to-device work, no device mismatch, bfloat16, provenance."""
from __future__ import annotations

import copy
import json

import pytest
import torch
from click.testing import CliRunner
from torch.utils._python_dispatch import TorchDispatchMode

from maco.device import on_device, resolve_device, runtime_provenance, use_deterministic
from maco.models import Model
from maco.optimize import maco, olah, pixel
from maco.transforms import bilinear_sample, crop_and_resize, lucid_transform_grids, lucid_transforms
from maco_study import main as cli
from stimuli.models import StudyModel
from stimuli.occlusion import occlusion_map

MEASURED_STEPS = 10


class _Done(Exception):
    """Raised by the callback after the measured steps: the final readout (.cpu()) cannot run on meta."""


class HostCopies(TorchDispatchMode):
    """Counts copies from the CPU to another device (what blocks on CUDA when done per step)."""

    def __init__(self) -> None:
        super().__init__()
        self.copies: list[str] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # noqa: ANN001, ANN204
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        sources = [a for a in args if isinstance(a, torch.Tensor)]
        targets = out if isinstance(out, (tuple, list)) else [out]
        if any(s.device.type == "cpu" and s.dim() > 0 for s in sources) and any(
                isinstance(t, torch.Tensor) and t.device.type != "cpu" for t in targets):
            self.copies.append(str(func))
        return out


class MetaGenerator(torch.Generator):
    """A CPU generator that says it belongs to the meta device (meta has no generator of its own)."""

    def __new__(cls, device: str = "cpu"):  # noqa: ANN204
        generator = super().__new__(cls)
        generator.meta_device = torch.device(device)
        return generator

    def __init__(self, device: str = "cpu") -> None:
        super().__init__()

    @property
    def device(self) -> torch.device:
        return self.meta_device


@pytest.fixture
def on_meta(tiny_model, monkeypatch):
    """The tiny trained network on the meta device: any CPU tensor mixed into its work raises."""
    monkeypatch.setattr(torch, "Generator", MetaGenerator)
    net = copy.deepcopy(tiny_model.net).to("meta")
    return Model(net=net, name="tiny", input_size=tiny_model.input_size, mean=tiny_model.mean,
                 std=tiny_model.std, weights=tiny_model.weights, num_classes=tiny_model.num_classes)


@pytest.fixture
def constructions(monkeypatch):
    """Counts tensors built from Python values (torch.tensor / torch.as_tensor) while counting is on."""
    count = {"on": False, "calls": []}
    for name in ("tensor", "as_tensor"):
        original = getattr(torch, name)

        def counted(*args, _original=original, _name=name, **kwargs):
            if count["on"]:
                count["calls"].append(_name)
            return _original(*args, **kwargs)
        monkeypatch.setattr(torch, name, counted)
    return count


@pytest.mark.parametrize("method", ["maco", "olah", "pixel"])
def test_steps_build_no_tensor_from_python_values_and_copy_nothing_to_the_device(method, on_meta, constructions):
    """Over 10 steps on a non-CPU device: no torch.tensor/as_tensor call, no CPU-to-device copy."""
    copies = HostCopies()

    def measure(step, parameters, values):
        if step == 0:  # the first step holds the set-up (constants made once per device)
            constructions["on"] = True
            copies.__enter__()
        elif step == MEASURED_STEPS:
            copies.__exit__(None, None, None)
            constructions["on"] = False
            raise _Done

    kwargs = {"steps": MEASURED_STEPS + 1, "progress": False, "callback": measure}
    if method == "maco":
        kwargs.update(size=32, crops=2)
    with pytest.raises(_Done):
        {"maco": maco, "olah": olah, "pixel": pixel}[method](on_meta, [0, 1], **kwargs)
    assert constructions["calls"] == [] and copies.copies == []


def test_occlusion_runs_on_another_device_without_host_copies(on_meta, constructions):
    image = torch.rand(3, 32, 32, device="meta")
    constructions["on"] = True
    with HostCopies() as copies:
        activations, colours = occlusion_map(StudyModel(on_meta), image, 1, side=12, stride=4, batch_size=8)
    assert activations.device.type == "meta" and activations.shape == (6, 6) and colours.shape == (3, 6, 6)
    assert constructions["calls"] == [] and copies.copies == []


def test_a_cpu_tensor_mixed_into_meta_work_is_caught(on_meta):
    """The meta path above would fail on a device mismatch: shown here with a deliberate one."""
    with pytest.raises(RuntimeError, match="device"):
        on_meta.net(torch.rand(1, 3, 32, 32))


def test_constants_are_made_once_per_device_and_dtype():
    table = (0.5, 1.5)
    assert on_device(table, "meta") is on_device(table, "meta")
    assert on_device(table, "cpu", torch.float64) is not on_device(table, "cpu")
    with torch.inference_mode():
        matrix = on_device((1.0, 2.0, 3.0), "cpu", torch.float64)
    assert not matrix.is_inference()  # still usable by autograd later


@pytest.mark.parametrize("method", ["maco", "olah"])
def test_bfloat16_gives_the_float32_gradient_and_objective(method, tiny_model):
    """Autocast bfloat16 forward (the phase, FFT, objective and optimiser stay float32).

    Pixels are no test here: Adam/NAdam's first steps move every parameter by
    about the learning rate whatever its gradient's size, so bfloat16 rounding
    flips the sign of the smallest gradient components and images drift apart
    pixel by pixel. The first step's gradient and the objectives must agree.
    """
    run = {"maco": lambda **k: maco(tiny_model, [0, 2], size=32, crops=2, progress=False, **k),
           "olah": lambda **k: olah(tiny_model, [0, 2], progress=False, **k)}[method]
    gradients, conv_dtypes = [], []

    def first_gradient(step, parameters, values):
        if step == 0:
            gradients.append(parameters.grad.flatten().clone())

    hook = tiny_model.net[0].register_forward_hook(lambda module, inputs, output: conv_dtypes.append(output.dtype))
    try:
        full = run(steps=2, seed=3, callback=first_gradient)
        tiny_model.compute_dtype = torch.bfloat16
        half = run(steps=2, seed=3, callback=first_gradient)
        logits = tiny_model(torch.rand(2, 3, 32, 32))
    finally:
        tiny_model.compute_dtype = torch.float32
        hook.remove()
    run(steps=1, seed=4, callback=first_gradient)
    assert set(conv_dtypes) == {torch.float32, torch.bfloat16}  # the bfloat16 path really ran in bfloat16
    assert logits.dtype == torch.float32 and half[0].image.dtype == torch.float32
    cosine = torch.nn.functional.cosine_similarity
    bf16_error, other_seed = 1 - cosine(gradients[0], gradients[1], dim=0), 1 - cosine(gradients[0], gradients[2], dim=0)
    assert bf16_error < 0.01 and bf16_error < other_seed / 5
    for a, b in zip(full, half):
        assert a.history == pytest.approx(b.history, rel=0.05, abs=0.02)


def test_deterministic_resampling_matches_grid_sample_values_and_gradients():
    generator = torch.Generator().manual_seed(0)
    images = torch.rand(3, 3, 40, 40, requires_grad=True)
    # Lucid's grids, and grids reaching well outside the image (zero padding)
    for grids in (lucid_transform_grids(3, 40, 24, generator), torch.rand(3, 24, 24, 2, generator=generator) * 3 - 1.5):
        expected = torch.nn.functional.grid_sample(images, grids, align_corners=False)
        got = bilinear_sample(images, grids)
        torch.testing.assert_close(got, expected, atol=1e-5, rtol=0)
        weights = torch.rand(expected.shape, generator=generator)
        (grad_expected,) = torch.autograd.grad((expected * weights).sum(), images)
        (grad_got,) = torch.autograd.grad((got * weights).sum(), images)
        torch.testing.assert_close(grad_got, grad_expected, atol=1e-5, rtol=0)


@pytest.fixture
def deterministic():
    use_deterministic()
    yield
    torch.use_deterministic_algorithms(False)
    torch.backends.cudnn.deterministic = False


def test_deterministic_mode_switches_transforms_and_is_recorded(deterministic):
    images = torch.rand(2, 3, 48, 48)
    default = lucid_transforms(images, 32, torch.Generator().manual_seed(1))
    boxes = torch.tensor([[0, 2.0, 3.0, 30.0, 31.0], [1, 0.0, 0.0, 48.0, 48.0]])
    crops = crop_and_resize(images, boxes, 16)
    assert runtime_provenance("cpu")["deterministic"]["algorithms"] is True
    torch.use_deterministic_algorithms(False)
    torch.testing.assert_close(default, lucid_transforms(images, 32, torch.Generator().manual_seed(1)),
                               atol=1e-5, rtol=0)
    torch.testing.assert_close(crops, crop_and_resize(images, boxes, 16))


def test_unknown_or_absent_devices_are_one_clear_error(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ValueError, match="no CUDA GPU is available here; use --device cpu"):
        resolve_device("cuda")
    with pytest.raises(ValueError, match="not a torch device name"):
        resolve_device("gpu0")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    with pytest.raises(ValueError, match="has 2 CUDA GPU"):
        resolve_device("cuda:2")
    assert resolve_device("cuda:1") == torch.device("cuda:1")


def test_visualize_records_dtype_and_device_in_run_json(tmp_path):
    out = tmp_path / "viz"
    result = CliRunner().invoke(cli, ["visualize", "--model", "test_resnet", "--random-weights", "--units", "3",
                                      "--method", "pixel", "--steps", "2", "--size", "32", "--device", "cpu",
                                      "--dtype", "bfloat16", "--out", str(out), "--quiet"])
    assert result.exit_code == 0, result.output
    runtime = json.loads((out / "run.json").read_text())["runtime"]
    assert runtime["dtype"] == "bfloat16" and runtime["device_kind"] == "cpu" and runtime["torch"] == torch.__version__
    assert runtime["deterministic"]["algorithms"] is False and runtime["cuda"] is None
    absent = CliRunner().invoke(cli, ["visualize", "--model", "test_resnet", "--random-weights", "--units", "3",
                                      "--device", "cuda:7", "--out", str(tmp_path / "none")])
    if torch.cuda.device_count() < 8:
        assert absent.exit_code == 1 and absent.output.startswith("Error: device cuda:7: ")
        assert not (tmp_path / "none").exists()
