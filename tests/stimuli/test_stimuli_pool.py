from __future__ import annotations

import numpy as np
import pytest
import torch

from stimuli.config import StimuliError
from stimuli.models import Preprocessing
from stimuli.pool import TopK, list_pool, load_image, merge_topk, pool_topk


def brute_force_topk(model, pool, units, k):
    images = torch.stack([load_image(pool.path(i), model.preprocessing)
                          for i in range(len(pool.files))])
    acts = model.logits(images)[:, units].double().numpy().T  # (U, N)
    order = [sorted(range(acts.shape[1]), key=lambda i: (-acts[u, i], i))[:k] for u in range(len(units))]
    return np.array([acts[u, o] for u, o in enumerate(order)]), np.array(order)


def test_streaming_topk_equals_brute_force_for_any_batching_and_chunking(tmp_path, model, make_pool):
    make_pool(tmp_path, 23)
    pool = list_pool(str(tmp_path))
    units, k = [0, 3, 7], 5
    expected_values, expected_indices = brute_force_topk(model, pool, units, k)
    for batch_size, workers in ((1, 0), (4, 1), (64, 0)):
        got = pool_topk(model, units, pool, range(len(pool.files)), k, batch_size, workers)
        np.testing.assert_array_equal(got.indices, expected_indices)
        np.testing.assert_allclose(got.values, expected_values, rtol=1e-6)
    chunks = [pool_topk(model, units, pool, range(a, min(a + 6, 23)), k, 4) for a in range(0, 23, 6)]
    merged = TopK.merged(chunks, k)
    np.testing.assert_array_equal(merged.indices, expected_indices)


def test_merge_topk_breaks_ties_by_index():
    values = np.array([[1.0, 2.0, 2.0, 0.5]])
    indices = np.array([[9, 7, 3, 1]])
    top_values, top_indices = merge_topk(values, indices, 3)
    assert top_indices.tolist() == [[3, 7, 9]]
    assert top_values.tolist() == [[2.0, 2.0, 1.0]]


def test_unreadable_files_are_skipped_and_counted(tmp_path, model, make_pool):
    make_pool(tmp_path, 6)
    (tmp_path / "class0" / "broken.jpg").write_bytes(b"not a jpeg at all")
    (tmp_path / "class1" / "truncated.png").write_bytes((tmp_path / "class1" / "img001.png").read_bytes()[:60])
    (tmp_path / "notes.txt").write_text("ignored: not an image name")
    pool = list_pool(str(tmp_path))
    assert len(pool.files) == 8
    got = pool_topk(model, [1], pool, range(len(pool.files)), 8, 3)
    assert sorted(pool.files[i] for i in got.unreadable) == ["class0/broken.jpg", "class1/truncated.png"]
    assert got.indices.shape == (1, 6)
    assert not set(got.indices[0]) & set(got.unreadable)


def test_empty_pool_fails_with_one_line(tmp_path):
    (tmp_path / "readme.txt").write_text("no images here")
    with pytest.raises(StimuliError, match="pool.source: no images"):
        list_pool(str(tmp_path))


def test_skimage_pool_is_available_offline():
    pool = list_pool("skimage")
    assert len(pool.files) >= 15
    image = load_image(pool.path(0), Preprocessing(48, 0.875, "bilinear"))
    assert image.shape == (3, 48, 48)
    # multiples of 1/255: the PNG of a base image is exactly what the network saw
    assert torch.equal(torch.round(image * 255) / 255, image)
