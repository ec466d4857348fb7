"""Shared test fixtures: registries, the ../shared data folder, tiny videos;
helpers to load a tool/benchmark script and to build episode samples."""
import importlib.util
import os.path as osp
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from mmaction.registry import MODELS
from mmaction.structures import ActionDataSample
from mmaction.utils import register_all_modules
from mmengine.model import BaseModel
from torch import nn
from torch.utils.data import Dataset

import amfir_mm  # noqa: F401 - registers the plug-in

register_all_modules(init_default_scope=True)

PROJECT_ROOT = Path(__file__).resolve().parents[1]
SHARED = PROJECT_ROOT.parent / 'shared'
SHARED_DATA = SHARED / 'data'


def load_script(relative_path: str, name: str):
    """Import a script of the project (``tools/…``, ``benchmarks/…``) as a
    module without running its ``__main__`` block."""
    spec = importlib.util.spec_from_file_location(name,
                                                  PROJECT_ROOT / relative_path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def episode_samples(shapes):
    """Episode samples (no inputs) of the given ``(N, K, Q)`` shapes: query
    labels ``0..N-1`` each repeated ``Q`` times, and the shape metainfo."""
    import torch
    from mmaction.structures import ActionDataSample
    samples = []
    for ways, shots, queries in shapes:
        sample = ActionDataSample().set_gt_label(
            torch.arange(ways).repeat_interleave(queries))
        sample.set_metainfo(
            dict(num_ways=ways, num_shots=shots, num_queries=queries))
        samples.append(sample)
    return samples


def feature_episode(ways=3,
                    shots=1,
                    queries=2,
                    frames=2,
                    channels=512,
                    seed=0):
    """Random frame features of one episode for an RGB + flow model:
    ``(dict(rgb=(1, V * T, C), flow=(1, V * T, C)), sample)`` with ``V =
    ways * (shots + queries)`` videos, support first, and the sample's
    query labels and episode shape."""
    gen = torch.Generator().manual_seed(seed)
    videos = ways * (shots + queries)
    feats = torch.randn(2, videos * frames, channels, generator=gen)
    sample = ActionDataSample().set_gt_label(
        torch.arange(ways).repeat_interleave(queries))
    sample.set_metainfo(
        dict(num_ways=ways, num_shots=shots, num_queries=queries))
    return dict(rgb=feats[:1], flow=feats[1:]), sample


def tiny_amfir(**overrides):
    """An AMFIR model whose heads have adapters; only its heads run here
    (``episode_outputs`` on given frame features)."""
    head = dict(
        type='PrototypeHead',
        temperature=0.5,
        adapter=dict(type='TemporalAdapter', in_channels=512, rank=4))
    cfg = dict(
        type='AMFIRRecognizer',
        rgb=dict(
            backbone=dict(type='ResNet', depth=18, pretrained=None),
            cls_head=head),
        flow=dict(
            backbone=dict(type='ResNet', depth=18, pretrained=None),
            cls_head=head),
        loss_asi=dict(type='ASILoss', label_smoothing=0.0, beta=1.0),
        loss_amd=dict(type='AMDLoss', temperature=2.0))
    cfg.update(overrides)
    torch.manual_seed(0)
    return MODELS.build(cfg)


@pytest.fixture(autouse=True)
def mmaction_scope():
    """Every test starts in MMAction2's registry scope (a Runner built by an
    earlier test may have switched MMEngine's global default scope)."""
    from mmengine.registry import DefaultScope
    with DefaultScope.overwrite_default_scope('mmaction'):
        yield


@pytest.fixture
def shared_data():
    """``../shared/data``, or skip where it is absent (a user's machine)."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f'{SHARED_DATA} not present')
    return SHARED_DATA


def write_frame_tree(root,
                     classes,
                     videos_per_class,
                     num_frames=4,
                     size=16,
                     tmpl='img_{:05d}.jpg'):
    """Write ``root/<class>/<video>/<tmpl>`` frames; a class's frames are
    filled with a class-specific grey level.  Returns the split lines."""
    lines = []
    for c, name in enumerate(classes):
        for v in range(videos_per_class):
            d = osp.join(root, name, f'v{v}')
            Path(d).mkdir(parents=True)
            for t in range(1, num_frames + 1):
                img = np.full((size, size, 3), 20 * c + t, np.uint8)
                cv2.imwrite(osp.join(d, tmpl.format(t)), img)
            lines.append(f'{name}/v{v}')
    return lines


@pytest.fixture
def frame_tree(tmp_path):
    """6 classes x 4 videos x 4 frames of 16 px, with a split file."""
    root = tmp_path / 'frames'
    lines = write_frame_tree(str(root), [f'class{i}' for i in range(6)], 4)
    split = tmp_path / 'train.txt'
    split.write_text('\n'.join(lines) + '\n')
    return dict(root=str(root), split=str(split), lines=lines)


class LinePoints(Dataset):
    """16 points of ``y = 2x + 1``: a dataset for tiny MMEngine runs."""

    def __len__(self):
        return 16

    def __getitem__(self, idx):
        x = torch.tensor([idx / 16.0])
        return dict(inputs=x, target=2 * x + 1)


class LineModel(BaseModel):
    """``y = w x + b``, squared error: a model for tiny MMEngine runs
    (``loss``: the mean squared error; ``predict``: each sample's error)."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.fc = nn.Linear(1, 1)

    def forward(self, inputs, target=None, mode='tensor'):
        inputs, target = torch.stack(inputs), torch.stack(target)
        out = self.fc(inputs)
        if mode == 'loss':
            return dict(loss=((out - target)**2).mean())
        if mode == 'predict':
            return [
                dict(err=float((o - t).abs())) for o, t in zip(out, target)
            ]
        return out
