import numpy as np
import pytest
import torch
from PIL import Image

from maco import spectra
from maco.spectra import (
    ANALYTIC, SpectrumError, Spectrum, SpectrumFallbackWarning, analytic_spectrum, choose_spectrum, frequency_grid,
    imagenet_spectrum, load_spectrum, resize_spectrum, resolve_spectrum, save_spectrum, spectrum_from_folder,
)

from maco.optimize import maco

from .conftest import SHARED_SPECTRUM, needs_shared


@needs_shared
def test_analytic_default_fits_the_published_spectrum_within_its_stated_error():
    published = torch.from_numpy(np.load(SHARED_SPECTRUM)).double()
    analytic = analytic_spectrum(512).magnitude.double()
    fy, fx = frequency_grid(512, 512)
    keep = (fy != 0) | (fx != 0)
    weight = 1 / torch.hypot(fy, fx)[keep] ** 2  # every octave counts the same, as in the fit
    for channel in range(3):
        error = (analytic[channel][keep].log() - published[channel][keep].log()) ** 2
        rms = torch.sqrt((error * weight).sum() / weight.sum()).item()
        assert rms <= spectra.ANALYTIC_FIT_RMS_LOG_ERROR + 1e-3


@needs_shared
def test_imagenet_spectrum_is_read_from_the_cache_and_checked(tmp_path, monkeypatch):
    monkeypatch.setenv("MACO_CACHE", str(tmp_path))
    cached = tmp_path / spectra.IMAGENET_SPECTRUM_FILENAME
    cached.write_bytes(SHARED_SPECTRUM.read_bytes())
    spectrum = imagenet_spectrum(download=False)
    assert spectrum.magnitude.shape == (3, 512, 257)
    assert spectrum.source.startswith("imagenet")
    assert resolve_spectrum(224).source.startswith("imagenet")
    cached.write_bytes(cached.read_bytes()[:-8] + b"tampered")  # same size, wrong hash
    with pytest.raises(SpectrumError, match="not cached"):
        imagenet_spectrum(download=False)
    fallback = resolve_spectrum(224)
    assert fallback.source.startswith("analytic") and "unavailable" in fallback.source and fallback.fallback


@pytest.fixture
def firewalled(tmp_path, monkeypatch):
    """An empty cache, downloading on, and a network that refuses: the calls to urlopen, counted."""
    monkeypatch.setenv("MACO_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("MACO_OFFLINE", "0")
    monkeypatch.setattr(spectra, "_download_failure", None)  # as in a fresh process
    calls = []

    def refuse(url, timeout):
        calls.append(url)
        raise OSError("firewalled")

    monkeypatch.setattr(spectra.urllib.request, "urlopen", refuse)
    return calls


def test_a_failed_download_is_tried_once_per_process(firewalled):
    for _ in range(3):
        with pytest.raises(SpectrumError, match="cannot download the ImageNet spectrum: firewalled"):
            imagenet_spectrum()
        assert resolve_spectrum(64).fallback == "cannot download the ImageNet spectrum: firewalled"
    assert len(firewalled) == 1


def test_a_study_never_falls_back_silently(firewalled, tiny_model):
    """Without a choice: the published spectrum or one line naming the choices; "analytic" when asked for."""
    with pytest.raises(SpectrumError, match="firewalled; give a spectrum .npy .* or choose 'analytic'"):
        choose_spectrum(None)
    chosen = choose_spectrum(ANALYTIC)
    assert chosen.source.startswith("analytic") and chosen.fallback is None and "unavailable" not in chosen.source
    assert torch.equal(chosen.magnitude, analytic_spectrum().magnitude)
    # the library's default falls back, and says so as a warning; provenance keeps saying it
    with pytest.warns(SpectrumFallbackWarning, match="published ImageNet spectrum is unavailable"):
        viz = maco(tiny_model, [0], steps=1, size=32, crops=1, progress=False)[0]
    assert viz.spectrum_source.startswith("analytic") and "unavailable: cannot download" in viz.spectrum_source


def test_resize_matches_frequencies_as_a_fraction_of_nyquist():
    magnitude = torch.rand(3, 64, 33) + 0.1
    small = resize_spectrum(Spectrum(magnitude, "test"), 16).magnitude
    assert small.shape == (3, 16, 9)
    assert torch.allclose(small[:, 3, 5], magnitude[:, 12, 20])  # frequency (3, 5) of 16 px is (12, 20) of 64
    assert torch.allclose(small[:, 16 - 3, 5], magnitude[:, 64 - 12, 20])  # negative frequencies too
    large = resize_spectrum(Spectrum(magnitude, "test"), 128)
    assert large.magnitude.shape == (3, 128, 65) and "resized to 128x128" in large.source
    assert torch.allclose(large.magnitude[:, 6, 10], magnitude[:, 3, 5])
    between = large.magnitude[:, 6, 11]  # half-way between source columns 5 and 6
    assert torch.allclose(between, (magnitude[:, 3, 5] + magnitude[:, 3, 6]) / 2)


def test_spectrum_from_folder_known_values_and_unreadable_files(tmp_path):
    size = 16
    Image.new("RGB", (40, 30), (128, 128, 128)).save(tmp_path / "grey.png")  # constant: DC only
    (tmp_path / "sub").mkdir()
    Image.new("RGB", (20, 20), (128, 128, 128)).save(tmp_path / "sub" / "grey2.jpg", quality=100)
    (tmp_path / "broken.jpg").write_bytes(b"not an image")
    spectrum = spectrum_from_folder(tmp_path, size, progress=False)
    assert "2 images, 1 unreadable" in spectrum.source
    magnitude = spectrum.magnitude
    assert magnitude.shape == (3, size, size // 2 + 1)
    from maco.color import decorrelate
    expected_dc = decorrelate(torch.full((3, 1, 1), 128 / 255)).flatten().abs() * size * size
    assert torch.allclose(magnitude[:, 0, 0], expected_dc, rtol=1e-3)
    rest = magnitude.clone()
    rest[:, 0, 0] = 0
    assert rest.max() < 1e-2 * expected_dc.min()


def test_folder_errors_name_the_problem(tmp_path):
    with pytest.raises(SpectrumError, match="does not exist"):
        spectrum_from_folder(tmp_path / "missing", 16, progress=False)
    (tmp_path / "a.png").write_bytes(b"junk")
    with pytest.raises(SpectrumError, match="no readable image.*1 unreadable"):
        spectrum_from_folder(tmp_path, 16, progress=False)


def test_load_rejects_wrong_shapes_and_round_trips(tmp_path):
    np.save(tmp_path / "bad.npy", np.ones((512, 257), dtype=np.float32))
    with pytest.raises(SpectrumError, match=r"shape \(512, 257\).*expected \(3, H, W//2\+1\)"):
        load_spectrum(tmp_path / "bad.npy")
    np.save(tmp_path / "neg.npy", -np.ones((3, 8, 5), dtype=np.float32))
    with pytest.raises(SpectrumError, match="negative"):
        load_spectrum(tmp_path / "neg.npy")
    original = analytic_spectrum(32)
    save_spectrum(original, tmp_path / "ok.npy")
    loaded = load_spectrum(tmp_path / "ok.npy")
    assert torch.equal(loaded.magnitude, original.magnitude)
    assert loaded.source.startswith("file:") and loaded.image_size == (32, 32)
