"""The demo's training scenes (fast: no network is trained here)."""
from __future__ import annotations

import timm
import torch

from demo.task import CLASS_COLOURS, CLASSES, OBJECTS_PER_SCENE, draw_objects, make_scenes, photo_crops


def test_scenes_hold_zero_one_or_two_objects_and_their_targets_say_which() -> None:
    images, targets = make_scenes(600, torch.Generator().manual_seed(3))
    assert images.shape == (600, 3, 64, 64) and targets.shape == (600, len(CLASSES))
    assert set(targets.unique().tolist()) == {0.0, 1.0}
    counts = targets.sum(1)
    # a scene's two objects may be of one class: then its target has one 1
    assert counts.max() == 2 and (counts == 0).float().mean() > OBJECTS_PER_SCENE[0] - 0.06
    assert (counts == 2).float().mean() > OBJECTS_PER_SCENE[2] - 0.1
    assert all(targets[:, c].sum() > 40 for c in range(len(CLASSES)))  # every class is drawn


def test_an_empty_scene_is_the_photo_and_an_object_changes_it_where_it_is_drawn() -> None:
    photos = photo_crops(4, torch.Generator().manual_seed(5))
    none = draw_objects(photos, torch.full((4,), -1), torch.Generator().manual_seed(6))
    assert torch.equal(none, photos)
    drawn = draw_objects(photos, torch.tensor([0, 1, 2, 3]), torch.Generator().manual_seed(6))
    changed = (drawn != photos).any(1).float().mean((1, 2))
    assert ((changed > 0.03) & (changed < 0.5)).all()  # radius 9-15 px of a 64 px image


def test_the_plain_cnn_has_no_relu() -> None:
    """A ReLU network trained in seconds was dead on a visualization's first, low-contrast image."""
    net = timm.create_model("small_vgg", num_classes=len(CLASSES))
    grey = torch.full((1, 3, 64, 64), 0.5, requires_grad=True)
    net(grey)[0, 0].backward()
    assert not any(isinstance(m, torch.nn.ReLU) for m in net.modules())
    assert grey.grad.abs().sum() > 0


def test_an_object_drawn_in_another_class_colour_keeps_its_place_and_shape() -> None:
    """A shape in another class's colour (the shape judge's test images): the shape and place are
    the class's, only the colour changes."""
    photos = photo_crops(3, torch.Generator().manual_seed(5))
    red_disks = torch.zeros(3, dtype=torch.long)
    own = draw_objects(photos, red_disks, torch.Generator().manual_seed(6))
    blue = draw_objects(photos, red_disks, torch.Generator().manual_seed(6), colours=CLASS_COLOURS[[1, 1, 1]])
    inside_own, inside_blue = (own != photos).any(1), (blue != photos).any(1)
    assert torch.equal(inside_own, inside_blue) and inside_own.float().mean() > 0.03
    red_mean, blue_mean = (image.permute(1, 0, 2, 3)[:, inside_own].mean(1) for image in (own, blue))  # R, G, B
    assert red_mean[0] > red_mean[2] + 0.3 and blue_mean[2] > blue_mean[0] + 0.3
