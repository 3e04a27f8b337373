"""Model loading over timm: presets for the study's networks, frozen and in eval mode.

Weights come from timm's pretrained weights (the Hugging Face hub cache,
downloaded once when online), a local checkpoint file, a folder of weights
(offline machines: ``weights_in_folder``), or random initialisation. Random
weights are used only when asked for (``weights="random"``); a missing
pretrained download is an error that says how to fix it, never a silent
fallback.
"""
from __future__ import annotations

import difflib
import socket
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

import timm
import torch
from torch import nn

from maco import small_networks  # noqa: F401 - registers small_vgg, small_resnet, small_vit with timm
from maco.device import at_least_float32, autocast

# The study's networks. The tags pin the weights: torchvision's original
# ImageNet-1k weights for the CNNs (as in the MACO paper's human study), and
# the AugReg ViT-B/16 fine-tuned on ImageNet-1k.
PRESETS = {
    "vgg16": "vgg16.tv_in1k",
    "resnet50": "resnet50.tv_in1k",
    "vit_b16": "vit_base_patch16_224.augreg2_in21k_ft_in1k",
}

RANDOM_WEIGHTS = "random"
PRETRAINED_WEIGHTS = "pretrained"


class ModelError(ValueError):
    """A model that cannot be loaded as asked; the message says how to fix it."""


@dataclass
class Model:
    """A frozen classifier that takes images in [0, 1] and returns logits.

    ``weights`` describes where the parameters came from (``"random"`` when
    they are random, so that every output can say so). ``compute_dtype``:
    the precision of the forward pass (bfloat16 runs it under autocast, the
    parameters stay float32); the logits are returned in float32 (or float64 from such a network).
    """

    net: nn.Module
    name: str
    input_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    weights: str
    num_classes: int
    compute_dtype: torch.dtype = torch.float32
    # what a .safetensors checkpoint says about its training (e.g. the demo's task, recipe, accuracy)
    metadata: dict[str, str] = field(default_factory=dict)
    _mean: torch.Tensor = field(init=False, repr=False)
    _std: torch.Tensor = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.net.eval()
        for parameter in self.net.parameters():
            parameter.requires_grad_(False)
        device = self.device
        self._mean = torch.tensor(self.mean, device=device).view(1, 3, 1, 1)
        self._std = torch.tensor(self.std, device=device).view(1, 3, 1, 1)

    @property
    def device(self) -> torch.device:
        parameter = next(self.net.parameters(), None)
        return parameter.device if parameter is not None else torch.device("cpu")

    @property
    def random_weights(self) -> bool:
        return self.weights == RANDOM_WEIGHTS

    def to(self, device: torch.device | str) -> "Model":
        self.net.to(device)
        self._mean = self._mean.to(device)
        self._std = self._std.to(device)
        return self

    def normalize(self, images: torch.Tensor) -> torch.Tensor:
        return (images - self._mean) / self._std

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        with autocast(images.device, self.compute_dtype):
            logits = self.net(self.normalize(images))
        return at_least_float32(logits)


def resolve_name(name: str) -> str:
    """Map a preset (``resnet50``) or any timm name to a timm model name."""
    timm_name = PRESETS.get(name, name)
    if not timm.is_model(timm_name.split(".")[0]):
        candidates = list(PRESETS) + timm.list_models()
        close = difflib.get_close_matches(name, dict.fromkeys(candidates), n=5, cutoff=0.6)
        hint = f"; closest: {', '.join(close)}" if close else ""
        raise ModelError(f"unknown model {name!r} (not a preset nor a timm model){hint}")
    return timm_name


def _hub_reachable(timeout_s: float = 3.0) -> bool:
    from huggingface_hub import constants

    host = urlparse(constants.ENDPOINT).hostname or "huggingface.co"
    try:
        socket.create_connection((host, 443), timeout=timeout_s).close()
        return True
    except OSError:
        return False


def _cached_weights(timm_name: str, cache_dir: Path | None = None) -> str | None:
    """The weights file of ``timm_name`` in the hub cache (``cache_dir``, else the default), or None; offline."""
    from huggingface_hub import try_to_load_from_cache

    hub_id = timm.models.get_pretrained_cfg(timm_name).hf_hub_id
    for filename in ("model.safetensors", "pytorch_model.bin"):  # what timm reads from the hub, in its order
        path = try_to_load_from_cache(hub_id, filename, cache_dir=cache_dir) if hub_id else None
        if isinstance(path, str):
            return path
    return None


WEIGHT_SUFFIXES = (".safetensors", ".pth", ".pt", ".bin")


def weights_in_folder(folder: Path, timm_name: str) -> Path:
    """``timm_name``'s pretrained weights in ``folder``, without the network; else a ModelError naming the files.

    Looked for, in order: ``<timm name>.safetensors`` (or .pth, .pt, .bin),
    then ``folder`` as a Hugging Face hub cache (itself, or its ``hub/``: an
    ``HF_HOME``), then the file of timm's download URL (weights not on the hub,
    e.g. ``legacy_xception``; torch's ``hub/checkpoints`` layout too).
    """
    config = timm.models.get_pretrained_cfg(timm_name)
    named = [folder / f"{timm_name}{suffix}" for suffix in WEIGHT_SUFFIXES]
    url_file = Path(urlparse(config.url).path).name if config.url else None
    downloaded = [place / url_file for place in (folder, folder / "checkpoints", folder / "hub" / "checkpoints")
                  ] if url_file else []
    for path in named:
        if path.is_file():
            return path
    for cache in (folder, folder / "hub"):
        cached = _cached_weights(timm_name, cache)
        if cached is not None:
            return Path(cached)
    for path in downloaded:
        if path.is_file():
            return path
    hub = f"; nor a hub cache entry models--{config.hf_hub_id.replace('/', '--')}" if config.hf_hub_id else ""
    url = f"; nor {url_file}" if url_file else ""
    raise ModelError(f"no weights for {timm_name} in {folder}: no file {named[0]} (or .pth, .pt, .bin){hub}{url}")


def _create_pretrained(timm_name: str) -> nn.Module:
    """Pretrained weights from the local cache first, then the hub if it answers.

    The cache is looked up without the network because an unreachable hub otherwise
    costs a minute of retries before the cache is used or the load fails.
    """
    cached = _cached_weights(timm_name)
    if cached is not None:
        return timm.create_model(timm_name, pretrained=True, pretrained_cfg_overlay={"file": cached})
    error: Exception | None = None
    if _hub_reachable():
        try:
            return timm.create_model(timm_name, pretrained=True)
        except Exception as download_error:  # hub, network and file errors all end here
            error = download_error
    reason = f"download failed: {type(error).__name__}" if error else "the hub cannot be reached"
    raise ModelError(
        f"pretrained weights for {timm_name} are not in the local cache and {reason}; fix: run "
        "once with internet access, point HF_HOME at a cache that has them, or give its weights "
        "as a local checkpoint file or a folder of weights"
    ) from error


def checkpoint_metadata(path: Path) -> dict[str, str]:
    """The string metadata of a .safetensors checkpoint (empty for other formats)."""
    if path.suffix != ".safetensors":
        return {}
    from safetensors import safe_open

    try:
        with safe_open(str(path), "pt") as checkpoint:
            return dict(checkpoint.metadata() or {})
    except Exception as error:
        raise ModelError(f"checkpoint {path} is not a readable safetensors file: {error}") from error


def load_model(
    name: str,
    weights: str | Path = PRETRAINED_WEIGHTS,
    device: torch.device | str = "cpu",
    seed: int = 0,
    compute_dtype: torch.dtype = torch.float32,
) -> Model:
    """Load ``name`` (a preset or any timm name) with frozen parameters in eval mode.

    ``weights``: ``"pretrained"`` (timm's hub cache, downloaded when online),
    ``"random"`` (only for tests and demos; recorded as such), the path of
    a local checkpoint file (a state dict, or timm's checkpoint formats), or
    a folder holding the pretrained weights (``weights_in_folder``).
    Random weights are drawn from ``seed``, so every process (a resumed or
    sharded build) gets the same network; the global RNG is left untouched.
    ``compute_dtype``: float32, or bfloat16 for the forward pass (``Model``).
    """
    timm_name = resolve_name(name)
    weights = str(weights)
    metadata: dict[str, str] = {}
    if weights == RANDOM_WEIGHTS:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            net = timm.create_model(timm_name, pretrained=False)
        description = RANDOM_WEIGHTS
    elif weights == PRETRAINED_WEIGHTS:
        net = _create_pretrained(timm_name)
        description = f"pretrained:{timm_name}"
    elif Path(weights).is_dir():
        path = weights_in_folder(Path(weights), timm_name)
        net = timm.create_model(timm_name, pretrained=True, pretrained_cfg_overlay={"file": str(path)})
        description = f"pretrained:{timm_name} from {path.resolve()}"
    else:
        checkpoint = Path(weights)
        if not checkpoint.is_file():
            raise ModelError(
                f"weights {weights!r} is neither 'pretrained', 'random', a checkpoint file nor a folder of weights"
            )
        metadata = checkpoint_metadata(checkpoint)
        # a network trained on another label set says how many classes it has (demo/networks.py)
        classes = {"num_classes": int(metadata["num_classes"])} if "num_classes" in metadata else {}
        net = timm.create_model(timm_name, pretrained=False, **classes)
        try:
            timm.models.load_checkpoint(net, str(checkpoint), strict=True)
        except Exception as error:
            raise ModelError(f"checkpoint {checkpoint} does not fit {timm_name}: {error}") from error
        description = f"checkpoint:{checkpoint.resolve()}"

    config = timm.data.resolve_data_config({}, model=net)
    return Model(
        metadata=metadata,
        net=net,
        name=name,
        input_size=int(config["input_size"][-1]),
        mean=tuple(float(v) for v in config["mean"]),
        std=tuple(float(v) for v in config["std"]),
        weights=description,
        num_classes=int(net.num_classes),
        compute_dtype=compute_dtype,
    ).to(device)
