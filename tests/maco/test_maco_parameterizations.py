import math

import pytest
import torch

from maco import parameterizations as P
from maco import transforms as T
from maco.optimize import method_defaults, olah, pixel
from maco.spectra import analytic_spectrum, resize_spectrum


def test_maco_settings_are_the_papers():
    defaults = method_defaults("maco")
    assert (defaults["steps"], defaults["size"], defaults["crops"], defaults["lr"]) == (256, 512, 6, 1.0)
    assert defaults["noise"] == 0.05 and defaults["magnitude_constraint"] is True
    assert (T.CROP_MEAN, T.CROP_STD, T.CROP_CENTRE_STD) == (0.275, 0.0144, 0.18)  # sides as Horama's; centres wider (v6)


def test_crop_sides_follow_the_clipped_normal_and_centres_gather_in_the_middle():
    for centre_std in (T.CROP_CENTRE_STD, None):
        boxes = T.maco_crop_boxes(4, 5000, 512, 512, torch.Generator().manual_seed(0), centre_std=centre_std)
        side = (boxes[:, 3] - boxes[:, 1]) / 512
        assert torch.equal(boxes[:, 0], torch.arange(4).repeat_interleave(5000).float())
        assert side.min() >= 0.1 - 1e-6 and side.max() <= 1.0
        assert abs(side.mean().item() - 0.275) < 0.001 and abs(side.std().item() - 0.0144) < 0.001
        assert (boxes[:, 1:] >= 0).all() and (boxes[:, 1:] <= 512 + 1e-3).all()  # inside the image
        centre = (boxes[:, 1] + boxes[:, 3]) / 2 / 512
        spread = centre.std().item()
        # uniform placement: the centre's std is near 0.75/sqrt(12) = 0.22; centre-biased: near 0.18, a bit less
        # once the boxes are shifted inside the image
        assert (0.16 < spread < 0.18) if centre_std else (0.19 < spread < 0.23)
    whole = T.whole_image_boxes(2, 40, 50, "cpu")
    assert whole.tolist() == [[0, 0, 0, 50, 40], [1, 0, 0, 50, 40]]


def test_crop_resize_is_antialiased():
    image = torch.rand(1, 3, 64, 64)
    whole = torch.tensor([[0.0, 0, 0, 64, 64]])
    assert torch.allclose(T.crop_and_resize(image, whole, 32), torch.nn.functional.avg_pool2d(image, 2), atol=1e-6)
    assert torch.allclose(T.crop_and_resize(image, whole, 64), image, atol=1e-6)


def test_olah_and_pixel_settings_are_lucids():
    for fn in (olah, pixel):
        defaults = method_defaults(fn.__name__)
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
        P.maco_image(*P.maco_init(2, 16, 16, g), analytic_spectrum(16).magnitude, P.SpectralLayout.of(16, 16)),
        P.fourier_image(P.fourier_init(2, 16, 16, g), P.fourier_scale(16, 16), 16),
        P.pixel_image(P.pixel_init(2, 16, 16, g)),
    ]
    for image in images:
        assert image.shape == (2, 3, 16, 16) and image.min() >= 0 and image.max() <= 1


@pytest.mark.parametrize("height, width", [(32, 32), (30, 27)])
@pytest.mark.parametrize("with_carrier", [False, True])
def test_the_written_out_phase_gradient_equals_autograds(height, width, with_carrier) -> None:
    layout = P.SpectralLayout.of(height, width)
    magnitude = layout.even(resize_spectrum(analytic_spectrum((height, width)), (height, width)).magnitude).double()
    generator = torch.Generator().manual_seed(height)
    phase, carrier = (t.double() for t in P.maco_init(2, height, width, generator))
    phase.requires_grad_()
    carrier = carrier if with_carrier else None
    grad_x = torch.randn(2, 3, height, width, generator=generator, dtype=torch.float64)
    energy = layout.ac_energy(magnitude)
    written = P.maco_spectral_image(phase, carrier, magnitude, layout, energy)
    autograds = P._spectral_image(phase, carrier, magnitude, layout, energy)[0]  # the same sums, taped
    # untaped, the spectrum is one torch.polar; taped, cos and sin apart: equal to rounding
    torch.testing.assert_close(written, autograds, rtol=1e-12, atol=1e-12 * autograds.abs().max().item())
    (got,) = torch.autograd.grad(written, phase, grad_x)
    (expected,) = torch.autograd.grad(autograds, phase, grad_x)
    torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-12 * expected.abs().max().item())
