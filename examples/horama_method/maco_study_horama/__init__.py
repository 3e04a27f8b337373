"""Horama's Fourier feature visualization (Olah et al.'s parameterization, Horama's crops and NAdam)
as a maco-study method: the example plugin of docs/methods.md, "Add your own method"."""
from __future__ import annotations

import torch
from maco.methods import Method, Reference


class HoramaFourier(Method):
    """One `horama.fourier` run per unit; its accumulated gradients are the mask (``mask = true``)."""
    kind = "optimized"
    # horama.fourier's own settings, at a study's scale: images in [0, 1], which maco's Model normalises
    defaults = {"steps": 256, "size": 224, "learning_rate": 1.0, "decay_power": 1.5, "crops": 6, "noise": 0.05}

    def render(self, model, units, settings, seed, **context):
        from horama import fourier

        references = []
        for unit in units:
            with torch.random.fork_rng(devices=[]):  # horama draws from torch's global generator
                torch.manual_seed(seed)
                image, gradients = fourier(
                    lambda images, unit=unit: model(images)[:, unit].mean(), decay_power=settings["decay_power"],
                    total_steps=settings["steps"], learning_rate=settings["learning_rate"],
                    image_size=settings["size"], model_input_size=model.input_size, noise=settings["noise"],
                    values_range=(0.0, 1.0), crops_per_iteration=settings["crops"], device=str(model.device))
            with torch.no_grad():
                objective = float(model(image[None].clamp(0, 1))[0, unit])
            references.append(Reference(image.detach().clamp(0, 1).cpu(), gradients.sum(0).detach().cpu(),
                                        objective=objective, algorithm="horama.fourier"))
        return references
