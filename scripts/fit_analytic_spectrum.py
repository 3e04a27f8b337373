"""Fit the analytic offline spectrum of maco/spectra.py to the published ImageNet spectrum.

Model, per decorrelated colour channel c, at signed frequencies (fy, fx) in
cycles per image of a 512 px image, with f = |(fy, fx)| and theta its angle:

    log r_c = a_c - alpha_c log(f + f0_c) - c_c f/256 + b_c cos(4 theta)
              - g_c ((|fx|/256)^p_c + (|fy|/256)^p_c)

(a power law with a low-frequency knee and an exponential fall-off, extra
power on the cardinal axes, and
the separable anti-aliasing roll-off near Nyquist). Fitted by least squares on
log magnitudes, DC excluded. Prints the constants to paste into
maco/spectra.py and the fit error stated there.

    python scripts/fit_analytic_spectrum.py ../shared/data/imagenet_spectrum_decorrelated.npy
"""
import sys

import numpy as np
from scipy.optimize import least_squares

sys.path.insert(0, ".")
from maco.spectra import analytic_log_magnitude, frequency_grid  # noqa: E402


def main(path: str) -> None:
    target = np.load(path).astype(np.float64)
    size = target.shape[1]
    fy, fx = (g.numpy() for g in frequency_grid(size, size))
    keep = (fy != 0) | (fx != 0)
    octave_weight = 1.0 / np.hypot(fy, fx)[keep]
    octave_weight /= np.sqrt(np.mean(octave_weight**2))
    rows = []
    for channel in range(3):
        log_target = np.log(target[channel][keep])

        def residual(params: np.ndarray, log_target: np.ndarray) -> np.ndarray:
            import torch

            model = analytic_log_magnitude(torch.tensor(fy), torch.tensor(fx), torch.tensor(params))
            return (model.numpy()[keep] - log_target) * octave_weight

        fit = least_squares(
            residual,
            args=(log_target,),
            x0=np.array([log_target.max(), 1.3, 1.0, 1.0, 0.1, 5.0, 8.0]),
            bounds=([-np.inf, 0.0, 0.01, -10.0, -2.0, 0.0, 1.0], [np.inf, 4.0, 50.0, 10.0, 2.0, 100.0, 40.0]),
        )
        rows.append(fit.x)
        weighted_rms = np.sqrt(np.mean(fit.fun**2))
        plain_rms = np.sqrt(np.mean((fit.fun / octave_weight) ** 2))
        print(
            f"channel {channel}: params {np.round(fit.x, 5).tolist()}, "
            f"octave-weighted rms log error {weighted_rms:.4f}, plain rms log error {plain_rms:.4f}"
        )
    print("ANALYTIC_PARAMS =", np.round(np.array(rows), 5).tolist())


if __name__ == "__main__":
    main(sys.argv[1])
