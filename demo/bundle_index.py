"""What the bundle says about the images the server shows: which query pair a trial is, which side
holds the argmax image, which condition a reference grid belongs to.

The server never says which image is correct before the answer is stored; the driver is a test
tool and is given the bundle. It recognises each image it downloads by its pixels (the server
re-encodes query images, see study_server/images.py, and never changes a pixel).
"""
from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass, replace
from pathlib import Path
from PIL import Image

from analysis.simulate import GenerativeModel
from stimuli.manifest import Manifest, QueryPair, image_path, load_manifest


class DriverError(Exception):
    """The server or the bundle does not behave as the browser expects; the message says where."""


def pixel_digest(png: bytes) -> str:
    """sha256 of an image's size and RGB pixels: the same for an image and its re-encodings."""
    with Image.open(io.BytesIO(png)) as image:
        rgb = image.convert("RGB")
    return hashlib.sha256(f"{rgb.width}x{rgb.height}:".encode() + rgb.tobytes()).hexdigest()


@dataclass(frozen=True)
class PairInfo:
    kind: str  # practice, main, catch
    pair: QueryPair
    network: str


class BundleIndex:
    """Looks up the trial a participant is shown from the ids (sha256) of its images."""

    def __init__(self, manifest: Manifest, pixel_ids: dict[str, str]):
        self.manifest = manifest
        self.pixel_ids = pixel_ids  # pixel_digest -> the bundle's image id
        networks = {u.key: u.network for u in manifest.units}
        self.pairs: dict[tuple[str, frozenset[str]], PairInfo] = {}
        for kind, pair in manifest.all_query_pairs():
            key = (pair.base_image, frozenset((pair.image_a, pair.image_b)))
            self.pairs[key] = PairInfo(kind, pair, networks[pair.unit])
        # the grid's order is the server's business: a set of images identifies the reference set
        self.reference_condition: dict[frozenset[str], str] = {
            frozenset(ref.images): ref.condition for ref in manifest.references}

    @classmethod
    def load(cls, bundle_dir: str | Path) -> "BundleIndex":
        manifest = load_manifest(bundle_dir)
        return cls(manifest, {pixel_digest(image_path(bundle_dir, image).read_bytes()): image
                              for image in manifest.images})

    def image_id(self, png: bytes) -> str:
        """The bundle's id of an image the server sent (its pixel digest when the bundle has none:
        the trial or reference set it is part of is then not found)."""
        digest = pixel_digest(png)
        return self.pixel_ids.get(digest, digest)

    def trial(self, base: str, left: str, right: str) -> PairInfo:
        info = self.pairs.get((base, frozenset((left, right))))
        if info is None:
            raise DriverError("the server showed a trial whose images are not a query pair of this bundle: "
                              "is --bundle the bundle the server serves?")
        return info

    def condition(self, references: list[str]) -> str:
        if not references:
            return "none"
        condition = self.reference_condition.get(frozenset(references))
        if condition is None:
            raise DriverError("the server showed reference images that are not a reference set of this bundle")
        return condition

    def model_for(self, model: GenerativeModel) -> GenerativeModel:
        """A profile's model on this study's levels and trial counts.

        A condition or network the model does not name gets effect 0 (the reference level).
        """
        m = self.manifest
        per_participant = m.protocol.main_trials_per_participant or len(m.query_pairs)
        return replace(
            model,
            condition_effects={c: model.condition_effects.get(c, 0.0) for c in m.conditions},
            network_effects={n.key: model.network_effects.get(n.key, 0.0) for n in m.networks},
            main_trials_per_network=max(1, round(per_participant / len(m.networks))),
            catch_trials=len(m.catch_trials), practice_trials=len(m.protocol.practice_round(m.practice_trials, 1)))  # per round
