import inspect
import math

import torch

from maco import parameterizations as P
from maco import transforms as T
from maco.optimize import maco, olah, pixel
from maco.spectra import analytic_spectrum


def test_magnitude_constraint_holds_exactly_at_every_step(tiny_model):
    """Before recorrelation and squashing, |FFT(x)| = c * r for one scalar c per image, at every step."""
    size = 48
    spectrum = analytic_spectrum(size)
    fixed = P.maco_magnitude(spectrum.magnitude, size).double()
    checked = []

    def check(step, phase, values):
        x = P.maco_spectral_image(phase.detach(), fixed.float(), size).double()
        measured = torch.fft.rfft2(x).abs()
        nonzero = fixed > 0
        for image in measured:
            ratio = image[nonzero] / fixed[nonzero]
            assert (ratio.max() - ratio.min()) / ratio.mean() < 1e-4
            assert image[~nonzero].max() < 1e-4 * image.max()  # the DC term stays 0
        checked.append(step)

    maco(tiny_model, [0, 1], steps=6, size=size, crops=2, spectrum=spectrum, progress=False, callback=check)
    assert checked == list(range(6))


def test_maco_images_have_zero_mean_and_unit_std_whatever_the_phase():
    """Parseval: the fixed magnitude fixes the energy, so the std normalisation is one constant."""
    g = torch.Generator().manual_seed(3)
    for size in (48, 33):  # even and odd widths (the rfft layout differs)
        magnitude = P.maco_magnitude(analytic_spectrum(size).magnitude, size)
        for phase in (P.maco_init(3, size, size, g), torch.zeros(1, 3, size, size // 2 + 1)):
            x = P.maco_spectral_image(phase, magnitude, size)
            assert torch.allclose(x.mean(dim=(1, 2, 3)), torch.zeros(len(x)), atol=1e-6)
            assert torch.allclose(x.std(dim=(1, 2, 3)), torch.ones(len(x)), atol=1e-5)


def test_maco_settings_are_the_papers():
    defaults = {k: v.default for k, v in inspect.signature(maco).parameters.items()}
    assert defaults["steps"] == 256 and defaults["size"] == 512 and defaults["lr"] == 1.0
    assert defaults["noise"] == 0.1 == T.NOISE
    assert (T.CROP_MEAN, T.CROP_STD) == (0.25, 0.1)


def test_crop_sides_follow_the_clipped_normal():
    boxes = T.maco_crop_boxes(4, 5000, 512, 512, torch.Generator().manual_seed(0))
    side = (boxes[:, 3] - boxes[:, 1]) / 512
    assert torch.equal(boxes[:, 0], torch.arange(4).repeat_interleave(5000).float())
    assert side.min() >= 0.1 - 1e-6 and side.max() <= 1.0
    assert abs(side.mean().item() - 0.25) < 0.01  # the low clip lifts the mean slightly
    assert (boxes[:, 1] >= 0).all() and (boxes[:, 3] <= 512 + 1e-3).all()


def test_crop_resize_is_antialiased():
    image = torch.rand(1, 3, 64, 64)
    whole = torch.tensor([[0.0, 0, 0, 64, 64]])
    assert torch.allclose(T.crop_and_resize(image, whole, 32), torch.nn.functional.avg_pool2d(image, 2), atol=1e-6)
    assert torch.allclose(T.crop_and_resize(image, whole, 64), image, atol=1e-6)


def test_olah_and_pixel_settings_are_lucids():
    for fn in (olah, pixel):
        defaults = {k: v.default for k, v in inspect.signature(fn).parameters.items()}
        assert defaults["steps"] == 512 and defaults["lr"] == 0.05
    assert (P.OLAH_DECAY, P.OLAH_SD, P.OLAH_MAGIC) == (1.0, 0.01, 4.0)
    assert T.LUCID_PAD == 12 and T.LUCID_JITTER == (8, 4)
    assert min(T.LUCID_SCALES) == 0.9 and max(T.LUCID_SCALES) == 1.1 and len(T.LUCID_SCALES) == 11
    assert min(T.LUCID_ANGLES) == -10 and max(T.LUCID_ANGLES) == 10 and T.LUCID_ANGLES.count(0) == 6


def test_fourier_scale_is_one_over_f_normalised():
    scale = P.fourier_scale(8, 8)
    assert math.isclose(scale[0, 1].item(), 1 / 0.125 * 8, rel_tol=1e-6)  # f = 1/8 cycles per pixel
    assert math.isclose(scale[0, 0].item(), 8 * 8, rel_tol=1e-6)  # DC clamped at f = 1/8
    assert math.isclose(scale[4, 4].item(), 1 / math.hypot(0.5, 0.5) * 8, rel_tol=1e-6)


def test_lucid_transforms_pad_with_grey_and_stay_near_the_centre():
    grey = torch.full((2, 3, 40, 40), 0.5)
    out = T.lucid_transforms(grey, 32, torch.Generator().manual_seed(0))
    assert out.shape == (2, 3, 32, 32) and torch.allclose(out, grey[:, :, :32, :32], atol=1e-6)
    grids = T.lucid_transform_grids(500, 40, 40, torch.Generator().manual_seed(1))
    centre = grids[:, 20, 20] * 20 + 20  # source pixel seen at the output centre
    # jitters shift by at most (8 + 4) / 2 px from the centre on average ... never beyond 12 px
    assert (centre - 20).abs().max() <= 12 * 1.1 + 1
    corners = grids[:, 0, 0] * 20 + 20
    assert (corners < 0).any()  # some outputs show the grey padding, as in Lucid


def test_parameterizations_render_valid_images():
    g = torch.Generator().manual_seed(0)
    images = [
        P.maco_image(P.maco_init(2, 16, 16, g), P.maco_magnitude(analytic_spectrum(16).magnitude, 16), 16),
        P.fourier_image(P.fourier_init(2, 16, 16, g), P.fourier_scale(16, 16), 16),
        P.pixel_image(P.pixel_init(2, 16, 16, g)),
    ]
    for image in images:
        assert image.shape == (2, 3, 16, 16) and image.min() >= 0 and image.max() <= 1
