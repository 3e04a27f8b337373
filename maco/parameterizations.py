"""Image parameterizations: MACO's phase-only spectrum, Olah et al.'s Fourier basis, pixels.

Each method is a pair of functions: ``*_init`` makes the parameter tensor for
``units`` images, ``*_image`` renders it to RGB images in [0, 1] of shape
(units, 3, H, W). All of them optimise in ImageNet's decorrelated colour space
(except pixels, which are plain RGB) and squash with a sigmoid.
"""
from __future__ import annotations

import math

import torch

from maco.color import recorrelate


# --- MACO: the magnitude is fixed, the phase is the only parameter -----------

def maco_magnitude(spectrum_magnitude: torch.Tensor, width: int) -> torch.Tensor:
    """The fixed magnitude MACO keeps: the spectrum with its DC term set to 0, scaled to unit image std.

    A zero DC term makes every image zero-mean in decorrelated space (what
    xplique's mean subtraction does after the inverse FFT) while keeping the
    magnitude constraint exact: the mean colour comes from the sigmoid's
    midpoint. With the magnitude fixed, Parseval fixes the image's energy
    whatever the phase, so the division by the image's standard deviation
    (as in the MACO reference code) is one constant, folded in here rather
    than recomputed and differentiated at every step.
    """
    magnitude = spectrum_magnitude.clone()
    magnitude[:, 0, 0] = 0
    height = magnitude.shape[-2]
    # rfft layout: every column but 0 (and W/2 for even W) stands for two conjugate bins
    multiplicity = torch.full((magnitude.shape[-1],), 2.0, dtype=magnitude.dtype, device=magnitude.device)
    multiplicity[0] = 1
    if width % 2 == 0:
        multiplicity[-1] = 1
    energy = (magnitude.square() * multiplicity).sum() / (height * width)  # sum of x^2 over the image
    pixels = magnitude.shape[0] * height * width
    return magnitude / torch.sqrt(energy / (pixels - 1))  # torch.std's unbiased estimate


def maco_init(units: int, height: int, width: int, generator: torch.Generator) -> torch.Tensor:
    """Uniform random phase, shape (units, 3, H, W//2+1)."""
    shape = (units, 3, height, width // 2 + 1)
    return (torch.rand(shape, generator=generator, device=generator.device) * 2 - 1) * math.pi


def _hermitian_phase(phase: torch.Tensor, width: int) -> torch.Tensor:
    """Make the phase odd on the self-conjugate columns of the rfft layout.

    Column 0 (and column W/2 for even W) hold both X[k] and X[-k] = conj(X[k]);
    an odd phase there means the inverse FFT keeps every magnitude exactly
    (otherwise irfft2 silently projects those columns and the constraint
    breaks), and the purely real bins get phase 0.
    """
    columns = torch.tensor([0, width // 2] if width % 2 == 0 else [0], device=phase.device)
    own = phase.index_select(-1, columns)
    mirrored = torch.roll(torch.flip(own, dims=[-2]), shifts=1, dims=-2)  # the phase at -k
    return phase.index_copy(-1, columns, (own - mirrored) / 2)


def maco_spectral_image(phase: torch.Tensor, magnitude: torch.Tensor, width: int) -> torch.Tensor:
    """x = F^-1(r e^{i phi}) for r = ``maco_magnitude(...)``: zero mean, unit standard deviation.

    This is the constrained image, before colour recorrelation and squashing:
    ``|rfft2(x)| == magnitude * c`` holds exactly for one scalar ``c``.
    """
    phase = _hermitian_phase(phase, width)
    # r cos + i r sin rather than torch.polar: same value, a cheaper backward (no sgn of r)
    spectrum = torch.complex(magnitude * torch.cos(phase), magnitude * torch.sin(phase))
    return torch.fft.irfft2(spectrum, s=(phase.shape[-2], width))


def maco_image(phase: torch.Tensor, magnitude: torch.Tensor, width: int) -> torch.Tensor:
    return torch.sigmoid(recorrelate(maco_spectral_image(phase, magnitude, width)))


# --- Olah et al. 2017 (Lucid's fft_image + to_valid_rgb) ----------------------

OLAH_DECAY = 1.0
OLAH_SD = 0.01
OLAH_MAGIC = 4.0  # Lucid divides the Fourier image by 4 before the colour mapping


def fourier_init(
    units: int, height: int, width: int, generator: torch.Generator, sd: float = OLAH_SD
) -> torch.Tensor:
    """Gaussian spectrum coefficients (real and imaginary), shape (units, 3, H, W//2+1, 2)."""
    return torch.randn((units, 3, height, width // 2 + 1, 2), generator=generator, device=generator.device) * sd


def fourier_scale(height: int, width: int, decay: float = OLAH_DECAY) -> torch.Tensor:
    """Lucid's 1/f^decay preconditioning, normalised to a unitary transform."""
    fy = torch.fft.fftfreq(height).view(-1, 1)
    fx = torch.fft.rfftfreq(width).view(1, -1)
    frequencies = torch.sqrt(fx**2 + fy**2)
    return 1.0 / frequencies.clamp(min=1.0 / max(height, width)) ** decay * math.sqrt(height * width)


def fourier_image(coefficients: torch.Tensor, scale: torch.Tensor, width: int) -> torch.Tensor:
    spectrum = torch.view_as_complex(coefficients) * scale.to(coefficients.device)
    image = torch.fft.irfft2(spectrum, s=(coefficients.shape[-3], width)) / OLAH_MAGIC
    return torch.sigmoid(recorrelate(image))


# --- pixels --------------------------------------------------------------------

def pixel_init(units: int, height: int, width: int, generator: torch.Generator, sd: float = OLAH_SD) -> torch.Tensor:
    """Gaussian pre-sigmoid pixels, shape (units, 3, H, W), plain RGB (no decorrelation)."""
    return torch.randn((units, 3, height, width), generator=generator, device=generator.device) * sd


def pixel_image(pixels: torch.Tensor) -> torch.Tensor:
    return torch.sigmoid(pixels)
