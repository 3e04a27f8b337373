"""The fixed magnitude spectrum that MACO keeps while it optimises the phase.

A spectrum is the mean per-channel magnitude of the 2-D FFT of natural images
in decorrelated colour space, in ``torch.fft.rfft2`` layout ``(3, H, W//2+1)``.
A run chooses its spectrum (``choose_spectrum``):

1. a ``.npy`` file the user names (``load_spectrum``), e.g. one computed from a
   folder of images by ``maco-study spectrum`` (``spectrum_from_folder``);
2. ``"analytic"``: an analytic approximation of the published one, for offline
   use (``analytic_spectrum``);
3. by default, the published ImageNet spectrum of the MACO authors, downloaded
   once into a cache and checked against its sha256 (``imagenet_spectrum``).
   When it is unavailable, a study (``stimuli build``, ``evaluate``) stops; an
   exploration (``visualize``, the library) falls back to the analytic one and
   says so (``Spectrum.fallback``). A failed download is not retried in the
   same process.

Every ``Spectrum`` carries a ``source`` string that outputs record.

Sizes (``resize_spectrum``): frequencies are matched as a fraction of Nyquist,
so a spectrum measured at 512 px serves any image size.
"""
from __future__ import annotations

import dataclasses
import hashlib
import os
import tempfile
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from tqdm import tqdm

from maco.color import decorrelate
from maco.images import image_files, load_rgb
from maco.parameterizations import SpectralLayout

IMAGENET_SPECTRUM_URL = "https://storage.googleapis.com/serrelab/loupe/spectrums/imagenet_decorrelated.npy"
IMAGENET_SPECTRUM_SHA256 = "a4810ea049ef9a0fe4e3f26660188e53222281879b333e8fd61377f7491aafc8"
IMAGENET_SPECTRUM_FILENAME = "imagenet_decorrelated.npy"
REFERENCE_SIZE = 512  # the published spectrum's (and the analytic fit's) image side

# Fitted by scripts/fit_analytic_spectrum.py to the published ImageNet spectrum:
# per decorrelated channel (a, alpha, f0, c, b, g, p) of ``analytic_log_magnitude``.
ANALYTIC_PARAMS = [
    [11.36492, 1.14871, 0.01, 2.53433, 0.16462, 5.07865, 12.38365],
    [11.44352, 1.1673, 0.01, 2.9753, 0.14666, 4.93317, 10.74654],
    [11.169, 1.1339, 0.01, 2.62924, 0.13721, 4.96653, 10.41395],
]
# Fit error in natural-log magnitude, worst channel, DC excluded: 0.158 rms with
# every octave of frequency weighted equally (a factor of about 1.17 either
# way), 0.381 rms over all bins unweighted (the misfit sits in the corners near
# Nyquist, where the measured magnitudes fall to ~1e-6).
ANALYTIC_FIT_RMS_LOG_ERROR = 0.158
# The published spectrum's DC share of each channel's energy (|X_DC|^2 over the full-spectrum sum), once
# its boundary cross is removed (``without_boundary_cross``; 0.348, 0.351, 0.382 with it).
ANALYTIC_DC_ENERGY_SHARE = [0.44157, 0.42817, 0.45323]


class SpectrumError(ValueError):
    """A spectrum that cannot be loaded, computed or fetched; the message says why."""


class SpectrumFallbackWarning(UserWarning):
    """MACO runs on the analytic spectrum because the published one is unavailable."""


@dataclass
class Spectrum:
    magnitude: torch.Tensor  # (3, H, W//2+1), float32, non-negative
    source: str
    boundary_cross_removed: bool = False  # set by ``resize_spectrum``, which removes it once
    fallback: str | None = None  # why the analytic spectrum stands in for the published one (None: it does not)

    @property
    def image_size(self) -> tuple[int, int]:
        height, half_width = self.magnitude.shape[-2:]
        return height, 2 * (half_width - 1)


def frequency_grid(height: int, width: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Signed frequencies in cycles per image, each of shape (H, W//2+1)."""
    fy = torch.fft.fftfreq(height, d=1.0 / height, dtype=torch.float64)
    fx = torch.fft.rfftfreq(width, d=1.0 / width, dtype=torch.float64)
    return torch.meshgrid(fy, fx, indexing="ij")


def analytic_log_magnitude(fy: torch.Tensor, fx: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
    """log r = a - alpha log(f + f0) - c f/N + b cos(4 theta) - g ((|fx|/N)^p + (|fy|/N)^p).

    A power law with a low-frequency knee and an exponential fall-off, extra
    power on the cardinal axes, and a separable roll-off near the Nyquist
    frequency N of a 512 px image (the anti-aliasing of the resized photos).
    f is in cycles per image.
    """
    a, alpha, f0, c, b, g, p = params
    radius = torch.hypot(fy, fx)
    theta = torch.atan2(fy, fx)
    nyquist = REFERENCE_SIZE / 2
    rolloff = (fx.abs() / nyquist) ** p + (fy.abs() / nyquist) ** p
    return a - alpha * torch.log(radius + f0) - c * radius / nyquist + b * torch.cos(4 * theta) - g * rolloff


def _analytic_magnitude(height: int, width: int) -> torch.Tensor:
    fy, fx = frequency_grid(height, width)
    params = torch.tensor(ANALYTIC_PARAMS, dtype=torch.float64)
    logs = [analytic_log_magnitude(fy, fx, p) for p in params]
    return torch.stack(logs).exp().float()


def analytic_spectrum(size: int | tuple[int, int] = REFERENCE_SIZE) -> Spectrum:
    """The offline default: a smooth fit to the published ImageNet spectrum, resized like any other.

    The fit excludes DC (its power law diverges there); DC is set to the
    published spectrum's share of each channel's energy, the mean colour's
    weight against the contrast, which MACO optimises.
    """
    magnitude = _analytic_magnitude(REFERENCE_SIZE, REFERENCE_SIZE).double()
    share = torch.tensor(ANALYTIC_DC_ENERGY_SHARE, dtype=torch.float64)
    magnitude[:, 0, 0] = torch.sqrt(share / (1 - share) * _ac_energy(magnitude, REFERENCE_SIZE))
    fit = Spectrum(
        magnitude.float(),
        f"analytic (offline fit to the ImageNet spectrum, octave-weighted rms log error {ANALYTIC_FIT_RMS_LOG_ERROR})",
        boundary_cross_removed=True,  # a smooth fit: no one-bin cross on its axes
    )
    resized = resize_spectrum(fit, size)
    return dataclasses.replace(resized, source=fit.source)


def resize_spectrum(spectrum: Spectrum, size: int | tuple[int, int]) -> Spectrum:
    """The spectrum MACO uses at an image size: without its boundary cross, resized as a fraction of Nyquist.

    The cross is removed once, at the spectrum's own resolution, where it is
    one bin wide (``without_boundary_cross``); a spectrum already through here
    keeps its axes. Sizes: natural spectra are close to scale-free
    (1/f^alpha), so matching frequencies as a fraction of Nyquist, as Horama
    does, keeps their shape; it also keeps the measured roll-off near Nyquist
    at the new Nyquist, so a larger image has no empty high frequencies and a
    smaller one no unfiltered band at its top (which costs faithfulness,
    docs/maco.md). Bilinear between bins, exact on the bins that fall on the
    source grid.
    """
    height, width = _pair(size)
    if not spectrum.boundary_cross_removed:
        spectrum = dataclasses.replace(spectrum, magnitude=without_boundary_cross(spectrum.magnitude),
                                       boundary_cross_removed=True)
    if (height, width) == spectrum.image_size:
        return spectrum
    src_height, src_width = spectrum.image_size
    fy, fx = frequency_grid(height, width)
    # source coordinates: rows fftshifted (row r holds frequency r - src_height // 2), columns as in rfft
    rows = fy * (src_height / height) + src_height // 2
    cols = fx * (src_width / width)
    shifted = torch.fft.fftshift(spectrum.magnitude.double(), dim=-2)
    magnitude = _bilinear(shifted, rows.clamp(0, src_height - 1), cols.clamp(0, shifted.shape[-1] - 1))
    # DC keeps its share of each channel's energy (the mean against the contrast): the other bins are
    # fewer in a smaller image, and a sampled DC alone made 128 px images one flat colour (docs/maco.md)
    source_ac = _ac_energy(spectrum.magnitude.double(), src_width)
    magnitude[:, 0, 0] *= torch.sqrt(_ac_energy(magnitude, width) / source_ac.clamp(min=1e-300))
    return dataclasses.replace(spectrum, magnitude=magnitude.float(), source=f"{spectrum.source}, resized to {height}x{width}")


def without_boundary_cross(magnitude: torch.Tensor) -> torch.Tensor:
    """The magnitude with each axis bin (kx = 0 or ky = 0, not DC) set to the mean of its two neighbours.

    A photo's DFT has a cross of extra energy on both axes, from the jumps
    between its opposite borders (the DFT sees the photo as periodic); the
    published spectrum has it (kx = 0 carries 1.2-2.2x its neighbours). A
    MACO image is periodic: there the cross would be content, streaks across
    the whole image (docs/maco.md).
    """
    column = magnitude[..., :, 1]  # |X(ky, 1)|; its neighbour across the axis is |X(ky, -1)| = |X(-ky, 1)|
    across = torch.roll(torch.flip(column, dims=[-1]), shifts=1, dims=-1)
    result = magnitude.clone()
    result[..., 1:, 0] = ((column + across) / 2)[..., 1:]
    result[..., 0, 1:] = (magnitude[..., 1, 1:] + magnitude[..., -1, 1:]) / 2
    return result


def _ac_energy(magnitude: torch.Tensor, width: int) -> torch.Tensor:
    """Per channel, the sum of |X|^2 over the full spectrum but DC (Parseval's weights)."""
    return (magnitude.square() * SpectralLayout.of(magnitude.shape[-2], width).weights.to(magnitude)).sum(dim=(-2, -1))


def _bilinear(grid: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
    """``grid[..., rows, cols]`` at fractional coordinates (already inside the grid); exact at integers."""
    r0, c0 = rows.floor().long(), cols.floor().long()
    r1, c1 = (r0 + 1).clamp(max=grid.shape[-2] - 1), (c0 + 1).clamp(max=grid.shape[-1] - 1)
    wr, wc = rows - r0, cols - c0
    top = grid[:, r0, c0] * (1 - wc) + grid[:, r0, c1] * wc
    bottom = grid[:, r1, c0] * (1 - wc) + grid[:, r1, c1] * wc
    return top * (1 - wr) + bottom * wr


def load_spectrum(path: str | Path) -> Spectrum:
    """A spectrum saved as ``.npy`` of shape (3, H, W//2+1)."""
    path = Path(path)
    try:
        array = np.load(path)
    except (OSError, ValueError) as error:
        raise SpectrumError(f"cannot read spectrum {path}: {error}") from error
    if array.ndim != 3 or array.shape[0] != 3 or array.shape[2] < 2:
        raise SpectrumError(
            f"spectrum {path} has shape {array.shape}; expected (3, H, W//2+1), e.g. (3, 512, 257)"
        )
    if not np.all(np.isfinite(array)) or (array < 0).any():
        raise SpectrumError(f"spectrum {path} has negative or non-finite magnitudes")
    return Spectrum(torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32)), f"file:{path.resolve()}")


def save_spectrum(spectrum: Spectrum, path: str | Path) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _atomic_write(path, lambda f: np.save(f, spectrum.magnitude.numpy()))


def spectrum_from_folder(folder: str | Path, size: int | tuple[int, int], progress: bool = True) -> Spectrum:
    """Mean magnitude spectrum of every readable image under ``folder`` (recursive).

    Images are resized (shorter side) and centre-cropped to ``size``, taken to
    [0, 1] and decorrelated, one at a time so the folder never sits in memory.
    Unreadable files are skipped and counted in the source string.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise SpectrumError(f"image folder {folder} does not exist or is not a folder")
    height, width = _pair(size)
    files = image_files(folder)
    total = torch.zeros(3, height, width // 2 + 1, dtype=torch.float64)
    used = skipped = 0
    for file in tqdm(files, desc="spectrum", unit="img", disable=not progress):
        try:
            image = load_rgb(file, (height, width))
        except (OSError, UnidentifiedImageError, Image.DecompressionBombError, ValueError):
            skipped += 1
            continue
        total += torch.fft.rfft2(decorrelate(image).double()).abs()
        used += 1
    if used == 0:
        raise SpectrumError(f"no readable image in {folder} ({len(files)} image files, {skipped} unreadable)")
    return Spectrum(
        (total / used).float(),
        f"folder:{folder.resolve()} ({used} images, {skipped} unreadable skipped, {height}x{width})",
    )


def cache_dir() -> Path:
    return Path(os.environ.get("MACO_CACHE", Path.home() / ".cache" / "maco-study"))


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


ANALYTIC = "analytic"  # the spectrum choice (a CLI value, study.toml's references.spectrum) of the analytic one
CHOICES_HINT = (f"give a spectrum .npy (maco-study spectrum), copy the published file into {{cache}}, "
                f"or choose {ANALYTIC!r} for the analytic approximation")
_download_failure: SpectrumError | None = None  # a failed download is tried once per process


def imagenet_spectrum(download: bool = True, timeout_s: float = 30.0) -> Spectrum:
    """The MACO authors' ImageNet spectrum (3x512x257), from the cache or downloaded once.

    The file is verified against its sha256 both after download and when read
    from the cache; a corrupted cached copy is replaced. A download that failed
    is not tried again in this process (a firewalled try costs seconds, and a
    run asks once per optimisation): the same error is raised.
    """
    global _download_failure
    path = cache_dir() / IMAGENET_SPECTRUM_FILENAME
    if not (path.is_file() and _sha256(path) == IMAGENET_SPECTRUM_SHA256):
        if not download:
            raise SpectrumError(f"the ImageNet spectrum is not cached at {path} and downloading is off (MACO_OFFLINE)")
        if _download_failure is not None:
            raise _download_failure
        try:
            payload = _download(timeout_s)
        except SpectrumError as error:
            _download_failure = error
            raise
        path.parent.mkdir(parents=True, exist_ok=True)
        _atomic_write(path, lambda f: f.write(payload))
    spectrum = load_spectrum(path)
    return Spectrum(spectrum.magnitude, f"imagenet (published, sha256 {IMAGENET_SPECTRUM_SHA256[:8]})")


def _download(timeout_s: float) -> bytes:
    """The published spectrum's bytes, checked against its sha256."""
    try:
        with urllib.request.urlopen(IMAGENET_SPECTRUM_URL, timeout=timeout_s) as response:
            payload = response.read()
    except OSError as error:
        raise SpectrumError(f"cannot download the ImageNet spectrum: {error}") from error
    if hashlib.sha256(payload).hexdigest() != IMAGENET_SPECTRUM_SHA256:
        raise SpectrumError("the downloaded ImageNet spectrum does not match its sha256; not cached")
    return payload


def choose_spectrum(choice: str | Path | None = None, *, fallback: bool = False) -> Spectrum:
    """The spectrum a run asked for, at its own size: a ``.npy`` file, ``"analytic"``, or None, the published one.

    When the published one is unavailable: with ``fallback``, the analytic one,
    its ``fallback`` saying why (its source too, for provenance); without, a
    ``SpectrumError`` that names the choices. Set ``MACO_OFFLINE=1`` to skip
    the download attempt.
    """
    if choice is not None and str(choice) == ANALYTIC:
        return analytic_spectrum()
    if choice is not None:
        return load_spectrum(choice)
    try:
        return imagenet_spectrum(download=os.environ.get("MACO_OFFLINE", "") in ("", "0"))
    except SpectrumError as error:
        if not fallback:
            raise SpectrumError(f"{error}; {CHOICES_HINT.format(cache=cache_dir() / IMAGENET_SPECTRUM_FILENAME)}"
                                ) from error
        analytic = analytic_spectrum()
        return dataclasses.replace(analytic, source=f"{analytic.source}; ImageNet spectrum unavailable: {error}",
                                   fallback=str(error))


def resolve_spectrum(size: int | tuple[int, int], choice: str | Path | None = None, *,
                     fallback: bool = True) -> Spectrum:
    """``choose_spectrum`` at the run's image size (``resize_spectrum``)."""
    return resize_spectrum(choose_spectrum(choice, fallback=fallback), size)


def _pair(size: int | tuple[int, int]) -> tuple[int, int]:
    height, width = (size, size) if isinstance(size, int) else size
    if height < 8 or width < 8:
        raise SpectrumError(f"image size {height}x{width} is too small (at least 8x8)")
    return int(height), int(width)


def _atomic_write(path: Path, write) -> None:
    """Write through a temporary file in the same folder, then rename: never a half file."""
    with tempfile.NamedTemporaryFile(dir=path.parent, suffix=".tmp", delete=False) as f:
        write(f)
    os.replace(f.name, path)
