"""Image parameterizations: MACO's phase-only spectrum, Olah et al.'s Fourier basis, pixels.

Each method is a pair of functions: ``*_init`` makes the parameter tensor for
``units`` images, ``*_image`` renders it to RGB images in [0, 1] of shape
(units, 3, H, W). All of them optimise in ImageNet's decorrelated colour space
(except pixels, which are plain RGB) and squash with a sigmoid.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from maco.color import recorrelate
from maco.device import on_device

# --- MACO: the magnitude is fixed, the phase is the parameter ------------------
#
# As in both reference implementations (Horama, xplique): the phase is
# standardised at every step (zero mean, unit std per image), which under
# NAdam lr 1.0 acts as a learning-rate decay (the raw phase spreads, so a raw
# step moves the standardised phase less and less); the DC term is kept as
# r_DC cos(phi_DC), so each channel's mean colour is optimised; the image is
# standardised (one scalar mean and std per image). That std comes from
# Parseval (a sum over the half spectrum) rather than from the image.
#
# One departure (v4, docs/maco.md): a fixed random carrier phase is added
# after the standardisation (the spectrum's own v4 change is in
# ``maco.spectra.resize_spectrum``).

# x @ it subtracts the mean over the last axis of 3: one product, not four ops; made in float64 so that a float64
# run's mean is removed to its own rounding (on_device casts it to the run's dtype)
CHANNEL_CENTRING = torch.eye(3, dtype=torch.float64) - 1 / 3


@dataclass(frozen=True)
class SpectralLayout:
    """The rfft2 layout of an H x W image, with the index tensors MACO needs, built once per run."""
    height: int
    width: int
    columns: torch.Tensor  # self-conjugate columns: 0, and W/2 for even W (they hold X[k] and X[-k])
    weights: torch.Tensor  # (H, W//2+1): full-spectrum bins per rfft bin (1 or 2), 0 at DC
    negated_rows: torch.Tensor  # (H,): row -k modulo H of every row k

    @classmethod
    def of(cls, height: int, width: int, device: torch.device | str = "cpu") -> SpectralLayout:
        columns = torch.tensor([0, width // 2] if width % 2 == 0 else [0], device=device)
        weights = torch.full((height, width // 2 + 1), 2.0, device=device)
        weights[:, columns] = 1
        weights[0, 0] = 0
        return cls(height, width, columns, weights, (-torch.arange(height, device=device)) % height)

    def mirrored(self, values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The self-conjugate columns at k and at -k (the row index negated modulo H)."""
        own = values.index_select(-1, self.columns)
        return own, own.index_select(-2, self.negated_rows)

    def even(self, magnitude: torch.Tensor) -> torch.Tensor:
        """The magnitude made even on the self-conjugate columns, so |rfft2(x)| = c r can hold there.

        A measured spectrum need not be (the published ImageNet one differs by
        up to 5x between k and -k there); irfft2 would silently average them.
        """
        own, mirrored = self.mirrored(magnitude)
        return magnitude.index_copy(-1, self.columns, (own + mirrored) / 2)

    def odd(self, phase: torch.Tensor) -> torch.Tensor:
        """The phase made odd on the self-conjugate columns (the purely real bins get phase 0)."""
        own, mirrored = self.mirrored(phase)
        return phase.index_copy(-1, self.columns, (own - mirrored) / 2)

    def ac_energy(self, magnitude: torch.Tensor) -> torch.Tensor:
        """Sum of |X|^2 over the full spectrum but DC, per image (or one value for a shared magnitude)."""
        return (magnitude.square() * self.weights).sum(dim=(-3, -2, -1))


def maco_init(units: int, height: int, width: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """The phase parameter, Gaussian as in the references, and the fixed carrier phase, U(-pi, pi).

    Both of shape (units, 3, H, W//2+1). The standardised phase has std 1, so
    it stays near 0 and is partly coherent (E cos > 0.5): without the carrier
    25-37% of the image's energy sits in a spike at the corner pixel, as in the
    references. Carrier + standardised phase is uniform on the circle.
    """
    shape = (units, 3, height, width // 2 + 1)
    phase = torch.randn(shape, generator=generator, device=generator.device)
    carrier = (2 * torch.rand(shape, generator=generator, device=generator.device) - 1) * math.pi
    return phase, carrier


def maco_spectral_image(
    phase: torch.Tensor,
    carrier: torch.Tensor | None,
    magnitude: torch.Tensor,
    layout: SpectralLayout,
    energy: torch.Tensor | None = None,
) -> torch.Tensor:
    """x = F^-1(r e^{i (standardise(phase) + carrier)}) standardised per image, before colour and sigmoid.

    ``magnitude``: (3, H, W//2+1) shared, or one per image, already even
    (``layout.even``); ``energy``: its ``layout.ac_energy`` when fixed (then
    computed once); ``carrier``: None for none. Every bin but DC satisfies
    |rfft2(x)| = c r exactly, for one scalar c per image; DC carries the mean
    colour, c r_DC cos(phi_DC) less the image's mean.

    With a fixed magnitude (MACO's own case) the backward is written out
    (``_FixedMagnitudeImage``): autograd's own takes three times the ops, each
    a pass over the spectrum; the free-magnitude ablation keeps autograd's.
    """
    if magnitude.requires_grad or energy is None or not phase.requires_grad:
        return _spectral_image(phase, carrier, magnitude, layout, energy)[0]
    return _FixedMagnitudeImage.apply(phase, carrier, magnitude, layout, energy)


def _spectral_image(phase, carrier, magnitude, layout, energy):  # noqa: ANN001, ANN202
    """``maco_spectral_image``'s forward, with what its backward needs."""
    centred = phase - phase.mean(dim=(1, 2, 3), keepdim=True)
    # the unbiased std from the centred squares: torch.std_mean's one-pass form is 20-30x slower on the CPU
    spread = centred.square().sum(dim=(1, 2, 3), keepdim=True).div_(phase[0].numel() - 1).sqrt_()
    denominator = spread + 1e-4
    phase = centred / denominator  # zero mean, unit std per image, as the references
    if carrier is not None:
        phase = phase + carrier
    centring = on_device(CHANNEL_CENTRING, phase.device, phase.dtype)
    dc = (magnitude[..., 0, 0] * torch.cos(phase[..., 0, 0])) @ centring  # (units, 3), the scalar mean subtracted
    pixels = layout.height * layout.width
    energy = layout.ac_energy(magnitude) if energy is None else energy
    # Parseval: sum x^2 = (AC energy + sum dc^2) / pixels; unbiased std as torch.std
    scale = torch.rsqrt((energy + dc.square().sum(dim=-1)) / (pixels * (3 * pixels - 1))).view(-1, 1, 1, 1)
    odd = layout.odd(phase)
    radius = magnitude * scale
    radius[..., 0, 0] = dc * scale.view(-1, 1)  # the DC phase is 0 after ``odd``: DC's real part is this
    if radius.requires_grad or odd.requires_grad:
        # not torch.polar: its backward goes through sgn(result), wrong for DC's negative radius and zero bins
        spectrum = torch.complex(radius * torch.cos(odd), radius * torch.sin(odd))
    else:  # the same products, written into the spectrum's own halves (torch.polar is 2-3x slower on the CPU)
        spectrum = torch.empty(*odd.shape, 2, dtype=odd.dtype, device=odd.device)
        real, imaginary = spectrum.unbind(-1)
        torch.cos(odd, out=real).mul_(radius)
        torch.sin(odd, out=imaginary).mul_(radius)
        spectrum = torch.view_as_complex(spectrum)
    x = torch.fft.irfft2(spectrum, s=(layout.height, layout.width))
    return x, (phase, centred, spread, denominator, dc, scale, spectrum)


class _FixedMagnitudeImage(torch.autograd.Function):
    """``_spectral_image`` with the phase's gradient written out (the magnitude is a constant)."""

    @staticmethod
    def forward(ctx, phase, carrier, magnitude, layout, energy):  # noqa: ANN001, ANN205
        x, saved = _spectral_image(phase, carrier, magnitude, layout, energy)
        ctx.save_for_backward(magnitude, *saved)
        ctx.layout = layout
        return x

    @staticmethod
    def backward(ctx, grad_x):  # noqa: ANN001, ANN205
        magnitude, phase, centred, spread, denominator, dc, scale, spectrum = ctx.saved_tensors
        layout = ctx.layout
        pixels = layout.height * layout.width
        # irfft2's adjoint (as autograd's FftC2RBackward): rfft2 over the same norm, the bins that stand
        # for two of the full spectrum counted twice
        grad = torch.fft.rfft2(grad_x, norm="forward")
        grad[..., 1:1 + layout.width - grad.shape[-1]].mul_(2)  # not ``*=``: that copies the slice back onto itself
        # with S = c r e^{i phi}: Re(grad conj(S)) is c dL/dc per bin, Im(grad conj(S)) is dL/dphi
        product = grad * spectrum.conj()
        # through the scale (every bin, DC's real part included), then through DC's real part:
        # c = rsqrt(k (E + sum dc^2)) gives each dc -(c dL/dc) c^2 k dc
        through_scale = product.real.sum(dim=(1, 2, 3)) * scale.view(-1).square() / (pixels * (3 * pixels - 1))
        grad_dc = torch.addcmul(grad.real[..., 0, 0] * scale.view(-1, 1), through_scale.view(-1, 1), dc, value=-1)
        grad_dc = grad_dc @ on_device(CHANNEL_CENTRING, grad_dc.device, grad_dc.dtype)  # symmetric: its own adjoint
        # through the bins' phase, odd on the self-conjugate columns (its own adjoint), which zeroes DC's
        grad_phase = layout.odd(product.imag)
        grad_phase[..., 0, 0] = -grad_dc * magnitude[..., 0, 0] * torch.sin(phase[..., 0, 0])
        # through the standardisation: z = c / (s + eps), s the unbiased std of c
        count = phase[0].numel()
        along = (grad_phase * centred).sum(dim=(1, 2, 3), keepdim=True) / (denominator.square() * spread * (count - 1))
        grad_phase = torch.addcmul((grad_phase - grad_phase.mean(dim=(1, 2, 3), keepdim=True)) / denominator,
                                   along, centred, value=-1)
        return grad_phase, None, None, None, None


def maco_image(
    phase: torch.Tensor,
    carrier: torch.Tensor | None,
    magnitude: torch.Tensor,
    layout: SpectralLayout,
    energy: torch.Tensor | None = None,
) -> torch.Tensor:
    return torch.sigmoid(recorrelate(maco_spectral_image(phase, carrier, magnitude, layout, energy)))


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
