"""GPU readiness of the generator, checked on the CPU: the pool loop on another device, one GPU per
torchrun rank, an absent GPU."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from maco.models import Model
from stimuli import build as build_module
from stimuli.config import load_config
from stimuli.models import StudyModel
from stimuli.pool import list_pool, pool_topk

TINY = Path(__file__).resolve().parents[2] / "examples" / "study_tiny.toml"


class Progress:
    def __init__(self) -> None:
        self.n = 0

    def update(self, count: int) -> None:
        self.n += count


def test_pool_activations_stay_on_the_device_until_the_chunk_ends(tmp_path, model, make_pool):
    """On meta every batch runs (the unit index lives there too); the one host copy is the chunk's last act."""
    make_pool(tmp_path, 10)
    pool = list_pool(str(tmp_path))
    net = model.model
    on_meta = StudyModel(Model(net=net.net.to("meta"), name=net.name, input_size=net.input_size, mean=net.mean,
                               std=net.std, weights=net.weights, num_classes=net.num_classes))
    progress = Progress()
    with pytest.raises(NotImplementedError, match="meta tensor"):
        pool_topk(on_meta, [0, 3], pool, range(10), 3, batch_size=4, progress=progress)
    assert progress.n == 10  # all three batches ran before the copy to the host


def test_each_torchrun_rank_makes_its_own_gpu_current(monkeypatch, tmp_path):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    current = []
    monkeypatch.setattr(torch.cuda, "set_device", lambda device: current.append(str(device)))
    builders = []
    monkeypatch.setattr(build_module.Builder, "run", lambda self: builders.append(self))
    monkeypatch.setenv("LOCAL_RANK", "3")
    build_module.build(load_config(TINY), tmp_path, build_module.Shard(3, 4), progress=False)
    assert current == ["cuda:1"] and builders[0].device == "cuda:1"  # rank 3 of 4 on a 2-GPU node


def test_an_absent_gpu_is_one_clear_error(monkeypatch, tmp_path):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(build_module.StimuliError, match="^--device: device cuda:0: no CUDA GPU is available"):
        build_module.build(load_config(TINY), tmp_path / "bundle", device="cuda:0", progress=False)
    assert not (tmp_path / "bundle").exists()
