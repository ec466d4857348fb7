"""Every config builds its model; AMFIR benchmark / ablation configs say
what they should."""
import copy
import glob
import os.path as osp
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from mmaction.registry import DATASETS, MODELS
from mmengine.config import Config
from mmengine.registry import DefaultScope

import amfir_mm  # noqa: F401
import amfir_mm.datasets.transforms  # noqa: F401 (paired transforms)


@pytest.fixture(autouse=True)
def mmaction_scope():
    """Build in MMAction2's scope whatever scope earlier tests left."""
    with DefaultScope.overwrite_default_scope('mmaction'):
        yield


ROOT = Path(__file__).resolve().parents[1]
CONFIGS = sorted(
    osp.relpath(p, ROOT)
    for p in glob.glob(str(ROOT / 'configs' / '**' / '*.py'), recursive=True)
    if '/_base_/' not in p)
BENCHMARKS = {  # config stem -> data folder
    'ssv2': 'ssv2_full',
    'ssv2small': 'ssv2_small',
    'kinetics100': 'kinetics100',
    'hmdb51': 'hmdb51',
    'ucf101': 'ucf101'
}
AMFIR = [f'configs/amfir_{b}_{k}shot.py' for b in BENCHMARKS for k in (1, 5)]
ABLATIONS = {  # file -> the model keys it changes, and to what
    'rgb_only': dict(modalities=('rgb', )),
    'flow_only': dict(modalities=('flow', )),
    'late_fusion_baseline': dict(reliability='uniform', loss_amd=None,
                                 fusion='mixture'),
    'mixture_fusion': dict(fusion='mixture'),
    'no_asi': dict(reliability='uniform'),
    'no_amd': dict(loss_amd=None),
    'no_ami': dict(adaptive_inference=False),
}


def load(path):
    return Config.fromfile(str(ROOT / path))


def offline(cfg):
    """A copy of a model config with pretrained weights removed."""
    if isinstance(cfg, dict):
        out = {}
        for key, value in cfg.items():
            if key == 'pretrained':
                value = None
            elif key == 'pretrained2d':
                value = False
            elif key == 'init_cfg' and 'Pretrained' in str(value):
                continue
            out[key] = offline(value)
        return out
    if isinstance(cfg, (list, tuple)):
        return type(cfg)(offline(v) for v in cfg)
    return cfg


def test_all_amfir_configs_exist():
    expected = set(AMFIR) | {f'configs/ablations/{a}.py' for a in ABLATIONS}
    assert expected <= set(CONFIGS)


_BUILT = {}


@pytest.mark.parametrize('path', CONFIGS)
def test_config_builds_its_model(path):
    cfg = load(path)
    assert cfg.default_scope == 'mmaction'
    model_cfg = offline(cfg.model.to_dict())
    key = repr(model_cfg)
    if key not in _BUILT:  # benchmark configs share one model: build once
        _BUILT[key] = MODELS.build(copy.deepcopy(model_cfg))
    model = _BUILT[key]
    # the classes the config names, where it names them
    assert type(model) is MODELS.get(model_cfg['type'])
    if model_cfg['type'] == 'AMFIRRecognizer':
        modalities = model_cfg['modalities']
        assert list(model.branches) == list(modalities)
        parts = [(model.branches[m], model_cfg[m]) for m in modalities]
    else:
        parts = [(model, model_cfg)]
    for module, part_cfg in parts:
        for name in ('backbone', 'cls_head'):
            assert type(getattr(module, name)) is \
                MODELS.get(part_cfg[name]['type']), (path, name)


PAIRED_TRAIN = [
    'SampleFrames', 'PairedRawFrameDecode', 'StackRGBFlow', 'Resize',
    'MultiScaleCrop', 'Resize', 'SplitRGBFlow', 'PairedFormatShape',
    'PackActionInputs'
]
PAIRED_TEST = [
    'SampleFrames', 'PairedRawFrameDecode', 'StackRGBFlow', 'Resize',
    'CenterCrop', 'SplitRGBFlow', 'PairedFormatShape', 'PackActionInputs'
]


def step_types(pipeline):
    return [step.type for step in pipeline]


@pytest.mark.parametrize('path', AMFIR)
def test_benchmark_protocol(path):
    cfg = load(path)
    stem, shots = osp.basename(path)[len('amfir_'):-3].rsplit('_', 1)
    data = f'data/{BENCHMARKS[stem]}'
    flips = 'ssv2' not in stem  # SSv2 labels name directions
    episodes = dict(train=100000, val=1000, test=10000)
    for split, num in episodes.items():
        loader = cfg[f'{split}_dataloader']
        ds = loader.dataset
        assert ds.type == 'EpisodicDataset'
        assert (ds.num_ways, ds.num_shots, ds.num_episodes) == \
            (5, int(shots[0]), num)
        video = ds.dataset
        assert video.type == 'FewShotRawframeDataset'
        assert video.filename_tmpl == 'img_{:05d}.jpg'
        assert video.test_mode == (split != 'train')
        # the child's data_root reaches the built dataset's paths
        built = DATASETS.build(dict(video.to_dict(), lazy_init=True))
        assert built.ann_file == f'{data}/splits/{split}.txt'
        assert built.data_prefix == dict(img=f'{data}/rawframes')
        sample = video.pipeline[0]
        assert (sample.clip_len, sample.frame_interval, sample.num_clips,
                sample.get('test_mode', False)) == (1, 1, 8, split != 'train')
        if split == 'train':
            expected = list(PAIRED_TRAIN)
            if flips:
                expected.insert(expected.index('SplitRGBFlow'), 'Flip')
        else:
            expected = PAIRED_TEST
        assert step_types(video.pipeline) == expected
        crops = [t for t in video.pipeline if 'Crop' in t.type]
        assert [c.get('input_size', c.get('crop_size')) for c in crops] == \
            [224]
    model = cfg.model
    assert model.type == 'AMFIRRecognizer'
    assert model.rgb.backbone.depth == model.flow.backbone.depth == 50
    assert model.rgb.backbone.pretrained.endswith('resnet50-0676ba61.pth')
    assert model.rgb.cls_head.type == model.flow.cls_head.type == 'OTAMHead'
    assert cfg.optim_wrapper.optimizer.lr == 1e-3
    assert cfg.optim_wrapper.accumulative_counts == 16
    assert cfg.train_cfg.max_iters == (75000 if 'ssv2' in stem else 10000)


def test_runtime_is_mmaction2s_with_iteration_checkpoints(tmp_path):
    """``mmaction::_base_/default_runtime.py`` resolves; the project's
    runtime changes only what it says."""
    ours = load('configs/_base_/default_runtime.py')
    stock = tmp_path / 'stock.py'
    stock.write_text("_base_ = ['mmaction::_base_/default_runtime.py']\n")
    theirs = Config.fromfile(str(stock))
    assert ours.default_scope == theirs.default_scope == 'mmaction'
    assert ours.custom_imports.imports == ['amfir_mm']
    checkpoint = ours.default_hooks.checkpoint
    assert (checkpoint.type, checkpoint.by_epoch, checkpoint.interval,
            checkpoint.max_keep_ckpts) == ('CheckpointHook', False, 1000, 2)
    assert theirs.log_processor.by_epoch and not ours.log_processor.by_epoch
    assert [b['type'] for b in ours.visualizer.vis_backends] == \
        ['LocalVisBackend', 'TensorboardVisBackend']
    assert ours.custom_hooks == [dict(type='NonFiniteLossHook')]
    for key in ('env_cfg', 'log_level', 'load_from', 'resume'):
        assert ours[key] == theirs[key], key
    assert set(ours.default_hooks) == set(theirs.default_hooks)


def test_ssv2_mini_paired_pipelines_are_the_base_at_112px():
    cfg = load('configs/_base_/datasets/ssv2_mini_paired.py')
    for split, expected in (('train', PAIRED_TRAIN), ('val', PAIRED_TEST)):
        video = cfg[f'{split}_dataloader'].dataset.dataset
        assert (video.ann_file, video.data_prefix) == \
            ('', dict(img=f'data/ssv2_mini_paired/{split}'))
        assert step_types(video.pipeline) == expected
        flow_image = cfg[f'{"test" if split == "val" else split}'
                         '_pipeline_flow_image']
        with_flow_image = list(expected)
        with_flow_image.insert(
            expected.index('SplitRGBFlow') + 1, 'FlowMagnitudeImage')
        assert step_types(flow_image) == with_flow_image
    train = cfg.train_dataloader.dataset.dataset.pipeline
    assert train[3].scale == (-1, 128)
    assert (train[4].input_size, train[4].scales) == (112, (1, 0.875, 0.75))
    assert train[5].scale == (112, 112)
    test = cfg.test_dataloader.dataset.dataset.pipeline
    assert (test[3].scale, test[4].crop_size) == ((-1, 128), 112)


@pytest.mark.parametrize('name', sorted(ABLATIONS))
def test_ablation_changes_only_what_it_names(name):
    base = load('configs/amfir_ssv2_1shot.py')
    cfg = load(f'configs/ablations/{name}.py')
    changed = {
        k
        for k in set(base.model) | set(cfg.model)
        if base.model.get(k) != cfg.model.get(k)
    }
    assert changed == set(ABLATIONS[name])
    for key, value in ABLATIONS[name].items():
        assert cfg.model[key] == value
    rest = {k: v for k, v in cfg.to_dict().items() if k != 'model'}
    assert rest == {k: v for k, v in base.to_dict().items() if k != 'model'}


def write_paired_video(folder, frames, size=(40, 32), seed=0):
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True)
    for t in range(1, frames + 1):
        cv2.imwrite(
            str(folder / f'img_{t:05d}.jpg'),
            rng.integers(0, 255, (size[1], size[0], 3), np.uint8))
        if t < frames:
            for axis in 'xy':
                cv2.imwrite(
                    str(folder / f'{axis}_{t:05d}.jpg'),
                    rng.integers(0, 255, (size[1], size[0]), np.uint8))


def test_benchmark_val_pipeline_gives_paired_episodes(tmp_path):
    """The dataset base on a tiny rawframes tree: episode inputs of
    ``(V * 8, 3, 224, 224)`` RGB and ``(V * 8, 2, 224, 224)`` flow."""
    cfg = load('configs/amfir_ucf101_1shot.py')
    lines = []
    for c in range(5):
        for v in range(2):
            write_paired_video(
                tmp_path / 'rawframes' / f'c{c}' / f'v{v}',
                frames=9,
                seed=10 * c + v)
            lines.append(f'c{c}/v{v}')
    (tmp_path / 'val.txt').write_text('\n'.join(lines) + '\n')
    ds_cfg = copy.deepcopy(cfg.val_dataloader.dataset.to_dict())
    ds_cfg['dataset'].update(
        ann_file=str(tmp_path / 'val.txt'),
        data_prefix=dict(img=str(tmp_path / 'rawframes')))
    ds_cfg['num_episodes'] = 2
    item = DATASETS.build(ds_cfg)[0]
    assert item['inputs']['imgs'].shape == (10 * 8, 3, 224, 224)
    assert item['inputs']['flow'].shape == (10 * 8, 2, 224, 224)


@pytest.mark.slow
def test_train_script_fails_clearly_without_data(tmp_path):
    """``python tools/train.py configs/amfir_ssv2_1shot.py`` without the
    data stops with the dataset's one-line message."""
    if (ROOT / 'data' / 'ssv2_full').exists():
        pytest.skip('data/ssv2_full exists here')
    proc = subprocess.run([
        sys.executable, 'tools/train.py', 'configs/amfir_ssv2_1shot.py',
        '--work-dir',
        str(tmp_path)
    ],
                          cwd=ROOT,
                          capture_output=True,
                          text=True,
                          timeout=300)
    assert proc.returncode == 1
    assert 'Traceback' not in proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert last == ('FileNotFoundError: data not found at '
                    'data/ssv2_full/splits/train.txt: the split file is '
                    'missing'), proc.stderr[-2000:]


def test_ssv2mini_noadapter_config_drops_only_the_adapters():
    base = load('configs/ssv2mini/amfir_ssv2mini_1shot_effl0.py').model
    frozen = load(
        'configs/ssv2mini/amfir_ssv2mini_1shot_effl0_noadapter.py').model
    assert base.rgb.cls_head.adapter.type == 'TemporalAdapter'
    for m in ('rgb', 'flow'):
        assert frozen[m].cls_head.adapter is None
        frozen[m].cls_head.adapter = base[m].cls_head.adapter
    assert frozen.to_dict() == base.to_dict()
