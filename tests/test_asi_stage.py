"""The held-out-class ASI stage (``AMFIRTrainLoop(asi_stage=...)``) run by
``tools/train.py`` on tiny generated shapes: it moves only ``model.asi``,
trains it on ``loss_asi`` of val-class episodes (checked against a numpy
free-energy / KL computation from the model's own per-episode
predictions), the final checkpoint holds its weights, and a model without
an ASI net is refused before training."""
import re

import numpy as np
import pytest
import torch
from mmengine.dataset import pseudo_collate
from mmengine.runner.checkpoint import _load_checkpoint

from amfir_mm.datasets import EpisodicDataset
from amfir_mm.engine import ASIStage
from amfir_mm.utils import UnsupportedOptionError
from amfir_mm.utils.tool import run_tool
from conftest import PROJECT_ROOT, load_script

MAX_ITERS, STAGE_ITERS = 2, 16


@pytest.fixture(scope='module')
def shapes(tmp_path_factory):
    from amfir_mm.datasets.synthetic_shapes import make_shapes_dataset
    root = tmp_path_factory.mktemp('shapes')
    make_shapes_dataset(str(root), videos_per_class=2, num_frames=4, size=32)
    return root


def write_config(tmp_path, shapes, extra=''):
    """The demo's ASI-stage config shrunk: 2 frames of 28 px, 2-way
    training and 3-way val episodes, 2 iterations, no validation run (the
    val loader is still configured: the stage draws from it), a
    16-iteration stage with a large learning rate, no workers, one
    checkpoint."""
    base = PROJECT_ROOT / 'configs/demo/amfir_shapes_1shot_r18_asistage.py'
    path = tmp_path / 'asistage_cfg.py'
    path.write_text(f"""
_base_ = [{str(base)!r}]
_flow = [
    dict(type='FlowPairIndices'), dict(type='RawFrameDecode'),
    dict(type='ComputeFlow',
         estimator=dict(type='DISFlowEstimator', preset='ultrafast')),
    dict(type='StackRGBFlow'), dict(type='Resize', scale=(-1, 32))]
_pack = [dict(type='SplitRGBFlow'),
         dict(type='PairedFormatShape', input_format='NCHW'),
         dict(type='PackActionInputs', collect_keys=('imgs', 'flow'))]
_sample = dict(type='SampleFrames', clip_len=1, frame_interval=1,
               num_clips=2)
_train = [_sample, *_flow, dict(type='RandomCrop', size=28), *_pack]
_test = [dict(_sample, test_mode=True), *_flow,
         dict(type='CenterCrop', crop_size=28), *_pack]


def _videos(split, pipeline):
    return dict(ann_file={str(shapes)!r} + f'/splits/{{split}}.txt',
                data_prefix=dict(img={str(shapes / 'rawframes')!r}),
                pipeline=pipeline)


_loader = dict(num_workers=0, persistent_workers=False)
train_dataloader = dict(**_loader, dataset=dict(
    num_ways=2, num_queries=1, dataset=_videos('train', _train)))
val_dataloader = dict(**_loader, dataset=dict(
    num_ways=3, num_episodes=2, dataset=_videos('val', _test)))
test_dataloader = dict(**_loader, dataset=dict(
    num_episodes=2, dataset=_videos('test', _test)))
train_cfg = dict(max_iters={MAX_ITERS}, val_begin=1000,
                 asi_stage=dict(iters={STAGE_ITERS}, log_interval=2,
                                optim_wrapper=dict(optimizer=dict(
                                    type='AdamW', lr=0.02))))
param_scheduler = []
default_hooks = dict(logger=dict(interval=1),
                     checkpoint=dict(interval={MAX_ITERS}))
visualizer = dict(vis_backends=[dict(type='LocalVisBackend')])
{extra}
""")
    return path


def split_classes(shapes, split):
    lines = (shapes / 'splits' / f'{split}.txt').read_text().split()
    return {line.split('/')[0] for line in lines}


@pytest.fixture(scope='module')
def staged_run(shapes, tmp_path_factory):
    """``tools/train.py`` with the stage; records the model's state just
    before the stage, the stage's losses and every episode its loader
    served (by ``episode_sample``, which the cached stage calls per
    episode)."""
    tmp_path = tmp_path_factory.mktemp('staged')
    config = write_config(tmp_path, shapes)
    record = dict(served=[])
    monkeypatch = pytest.MonkeyPatch()
    original_run = ASIStage.run
    original_sample = EpisodicDataset.episode_sample

    def run(self):
        record['before'] = {
            k: v.detach().clone()
            for k, v in self._model.state_dict().items()
        }
        record['stage'] = self
        record['losses'] = original_run(self)
        model = self._model
        record['restored'] = (all(m.training for m in model.modules()),
                              all(p.requires_grad for p in model.parameters()))
        return record['losses']

    def episode_sample(self, index):
        order, sample = original_sample(self, index)
        record['served'].append((self, index, list(sample.video_ids)))
        return order, sample

    monkeypatch.setattr(ASIStage, 'run', run)
    monkeypatch.setattr(EpisodicDataset, 'episode_sample', episode_sample)
    try:
        tool = load_script('tools/train.py', 'amfir_train_tool_asi')
        runner = tool.main([str(config), '--work-dir', str(tmp_path / 'w')])
    finally:
        monkeypatch.undo()
    return dict(record, runner=runner, work_dir=tmp_path / 'w')


def test_stage_moves_only_the_asi_net(staged_run):
    """Branches, heads and BN statistics keep their stage-less values
    exactly; every ASI weight tensor changed."""
    before = staged_run['before']
    after = staged_run['runner'].model.state_dict()
    assert set(after) == set(before)
    asi_keys = [k for k in after if k.startswith('asi.')]
    assert asi_keys and any('running_mean' in k for k in after)
    for key, value in after.items():
        if key.startswith('asi.'):
            assert not torch.equal(value, before[key]), key
        else:
            torch.testing.assert_close(
                value, before[key], rtol=0, atol=0, msg=key)
    # the train modes and requires_grad flags are back after the stage
    assert staged_run['restored'] == (True, True)
    assert len(staged_run['losses']) == STAGE_ITERS


def test_stage_trains_on_val_class_episodes_only(shapes, staged_run):
    stage = staged_run['stage']
    served = [(index, ids) for dataset, index, ids in staged_run['served']
              if dataset is stage.dataloader.dataset]
    # one episode per iteration, each drawn once, in sampler order
    assert [index for index, _ in served] == list(range(STAGE_ITERS))
    classes = {vid.split('/')[0] for _, ids in served for vid in ids}
    val, train = split_classes(shapes, 'val'), split_classes(shapes, 'train')
    assert not val & train
    assert classes <= val and len(classes) > 3  # 3-way: several episodes


def _numpy_asi_loss(sample, beta=1.0, eps=0.1, temperature=1.0):
    """``KL(r || pi)`` averaged over queries, ``r = softmax(-G / T)`` with
    ``G = CE(pref, p) + beta H(p)`` (ASILoss with the config's
    defaults), from a predicted episode's posteriors and ``pi``."""
    probs = np.stack([sample.rgb_score.numpy(),
                      sample.flow_score.numpy()], 1).astype(np.float64)
    pi = sample.reliability.numpy().astype(np.float64)  # (M, 2)
    labels = sample.gt_label.numpy()
    ways = probs.shape[-1]
    pref = np.full((len(labels), ways), eps / ways)
    pref[np.arange(len(labels)), labels] += 1 - eps
    logp = np.log(probs)
    energy = -(pref[:, None] * logp).sum(-1) - beta * (probs * logp).sum(-1)
    target = np.exp(-energy / temperature)
    target /= target.sum(1, keepdims=True)
    return float((target * (np.log(target) - np.log(pi))).sum(1).mean())


def test_stage_optimises_loss_asi_of_its_episodes(staged_run):
    """The stage's first loss is loss_asi of its first episode under the
    stage-less model (computed here in numpy from the per-episode predict
    path, videos loaded through the val pipeline), and after the stage
    the numpy loss over its first 6 episodes is lower."""
    runner, stage = staged_run['runner'], staged_run['stage']
    model, dataset = runner.model, stage.dataloader.dataset
    model.eval()
    after_state = {k: v.clone() for k, v in model.state_dict().items()}

    episodes = [pseudo_collate([dataset[i]]) for i in range(6)]

    def losses():
        with torch.no_grad():
            return [
                _numpy_asi_loss(model.test_step(episode)[0])
                for episode in episodes
            ]

    model.load_state_dict(staged_run['before'])
    before = losses()
    model.load_state_dict(after_state)
    after = losses()
    assert staged_run['losses'][0] == pytest.approx(before[0], abs=1e-5)
    assert np.mean(after) < np.mean(before)


def test_final_checkpoint_holds_the_stage_two_asi(staged_run):
    work = staged_run['work_dir']
    assert sorted(p.name for p in work.glob('*.pth')) == \
        [f'iter_{MAX_ITERS}.pth']
    saved = _load_checkpoint(
        str(work / f'iter_{MAX_ITERS}.pth'), map_location='cpu')
    assert saved['meta']['iter'] == MAX_ITERS
    state = saved['state_dict']
    final = staged_run['runner'].model.state_dict()
    before = staged_run['before']
    for key, value in state.items():
        torch.testing.assert_close(value, final[key], rtol=0, atol=0)
        if key.startswith('asi.'):
            assert not torch.equal(value, before[key]), key
    log = next(work.glob('*/*.log')).read_text()
    assert re.search(
        rf'ASI stage: iter {STAGE_ITERS}/{STAGE_ITERS} '
        r'loss_asi \d+\.\d{4}', log)
    # the stage ran in the last iteration, before its checkpoint was saved
    assert log.index(f'Iter(train) [{MAX_ITERS - 1}/{MAX_ITERS}]') < \
        log.index('ASI stage: training') < log.index('ASI stage: done') < \
        log.index(f'Saving checkpoint at {MAX_ITERS} iterations')


@pytest.mark.parametrize('model', [
    "dict(modalities=('rgb', ))",
    "dict(reliability='uniform')",
])
def test_model_without_asi_net_is_refused_before_training(
        shapes, tmp_path, capsys, model):
    config = write_config(tmp_path, shapes, f'model = {model}')
    tool = load_script('tools/train.py', 'amfir_train_tool_asi_refused')
    status = run_tool(
        tool.main,
        'train', [str(config), '--work-dir',
                  str(tmp_path / 'w')],
        usage_errors=(UnsupportedOptionError, ))
    err = capsys.readouterr().err.strip().splitlines()
    assert status == 1
    assert err[-1].startswith(
        'error: train_cfg.asi_stage needs a model with an ASI reliability '
        'net'), err
    assert 'remove asi_stage from train_cfg' in err[-1]
    assert not (tmp_path / 'w').exists()  # nothing trained, nothing left


def test_stage_without_val_loader_asks_for_one(shapes, tmp_path, capsys):
    """``--no-validate`` removes the val loader the stage draws from: a
    one-line error before training says to set ``asi_stage.dataloader``."""
    config = write_config(tmp_path, shapes)
    tool = load_script('tools/train.py', 'amfir_train_tool_asi_noval')
    status = run_tool(
        tool.main,
        'train',
        [str(config), '--work-dir',
         str(tmp_path / 'w'), '--no-validate'],
        usage_errors=(UnsupportedOptionError, ))
    err = capsys.readouterr().err.strip().splitlines()
    assert status == 1
    assert err[-1].startswith('error: train_cfg.asi_stage draws its '
                              'held-out-class episodes from the '
                              'val_dataloader config'), err
    assert 'set train_cfg.asi_stage.dataloader' in err[-1]
    assert not (tmp_path / 'w').exists()
