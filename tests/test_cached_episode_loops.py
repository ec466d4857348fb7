"""The cached-embedding meta-test predicts exactly what the per-episode
path predicts, and reports the same metric."""
import copy
import logging
import os
import pickle
from functools import partial

import pytest
import torch
from mmaction.registry import DATASETS
from mmengine.dataset import DefaultSampler, pseudo_collate
from mmengine.hooks import Hook
from mmengine.registry import FUNCTIONS
from mmengine.runner import Runner
from torch.utils.data import DataLoader

from amfir_mm.engine.cached_episode_loops import weights_hash
from amfir_mm.utils.io import RefuseOverwriteError
from test_episodic_dataset import PIPELINE

MODEL = dict(
    type='FewShotRecognizer',
    backbone=dict(type='ResNet', depth=18, pretrained=None, norm_eval=False),
    cls_head=dict(type='PrototypeHead', metric='cosine', temperature=0.1),
    data_preprocessor=dict(
        type='ActionDataPreprocessor',
        mean=[127.5] * 3,
        std=[64.] * 3,
        format_shape='NCHW'))

R18 = dict(type='ResNet', depth=18, pretrained=None, norm_eval=False)
AMFIR = dict(
    type='AMFIRRecognizer',
    rgb=dict(backbone=R18, cls_head=dict(type='PrototypeHead')),
    flow=dict(backbone=R18, cls_head=dict(type='PrototypeHead')))
# OTAM heads (their pair-table cache) and an ASI net reading the pooled
# query features and the cross-modal evidence
AMFIR_OTAM = dict(
    type='AMFIRRecognizer',
    rgb=dict(backbone=R18, cls_head=dict(type='OTAMHead')),
    flow=dict(backbone=R18, cls_head=dict(type='OTAMHead')),
    asi=dict(feature_channels=(512, 512), cross_modal=True))
# RGB frames plus DIS flow computed on the fly at the same indices
PAIRED_PIPELINE = [
    dict(type='SampleFrames', clip_len=1, num_clips=3, test_mode=True),
    dict(type='FlowPairIndices'),
    dict(type='RawFrameDecode'),
    dict(type='ComputeFlow', estimator=dict(type='DISFlowEstimator')),
    dict(type='StackRGBFlow'),
    dict(type='SplitRGBFlow'),
    dict(type='PairedFormatShape', input_format='NCHW'),
    dict(type='PackActionInputs', collect_keys=('imgs', 'flow'))
]


def episodic(tree, pipeline=PIPELINE):
    return dict(
        type='EpisodicDataset',
        dataset=dict(
            type='FewShotRawframeDataset',
            ann_file=tree['split'],
            data_prefix=dict(img=tree['root']),
            pipeline=pipeline,
            test_mode=True),
        num_ways=3,
        num_shots=2,
        num_queries=2,
        num_episodes=12,
        seed=5)


def run_test(tree,
             work_dir,
             loop,
             dump,
             model=MODEL,
             pipeline=PIPELINE,
             test_dataloader=None,
             **loop_args):
    """A runner testing ``model`` with ``loop`` on the 12 episodes of
    :func:`episodic`, dumping the predictions to ``dump``; and a copy of
    its initial weights.  ``test_dataloader``: a built loader, else the
    default config."""
    if test_dataloader is None:
        test_dataloader = dict(
            dataset=episodic(tree, pipeline),
            batch_size=1,
            num_workers=0,
            sampler=dict(type='DefaultSampler', shuffle=False),
            collate_fn=dict(type='pseudo_collate'))
    runner = Runner(
        model=model,
        work_dir=str(work_dir),
        test_dataloader=test_dataloader,
        test_evaluator=[
            dict(type='FewShotAccuracy'),
            dict(type='DumpResults', out_file_path=str(dump))
        ],
        test_cfg=dict(type=loop, **loop_args),
        randomness=dict(seed=0),
        default_scope='mmaction',
        experiment_name=f'{loop}_{dump.stem}')
    runner.model.init_weights()
    state = {k: v.clone() for k, v in runner.model.state_dict().items()}
    return runner, state


def load_dump(path):
    """The predictions ``DumpResults`` wrote to ``path``."""
    with open(path, 'rb') as f:
        return pickle.load(f)


@pytest.mark.parametrize(
    'model,pipeline',
    [(MODEL, PIPELINE),
     pytest.param(AMFIR, PAIRED_PIPELINE, marks=pytest.mark.slow),
     pytest.param(AMFIR_OTAM, PAIRED_PIPELINE, marks=pytest.mark.slow)],
    ids=['rgb_prototype', 'amfir', 'amfir_otam_asi_features'])
def test_cached_path_equals_per_episode_path(frame_tree, tmp_path, model,
                                             pipeline):
    slow_runner, state = run_test(frame_tree, tmp_path / 'slow', 'TestLoop',
                                  tmp_path / 'slow.pkl', model, pipeline)
    fast_runner, _ = run_test(
        frame_tree,
        tmp_path / 'fast',
        'CachedEpisodeTestLoop',
        tmp_path / 'fast.pkl',
        model,
        pipeline,
        episode_batch_size=5)
    if model is AMFIR_OTAM:  # a trained-like ASI: pi differs per query
        with torch.no_grad():
            torch.nn.init.normal_(slow_runner.model.asi.mlp[-1].weight)
        state = slow_runner.model.state_dict()
    fast_runner.model.load_state_dict(state)  # the same weights
    slow_metrics = slow_runner.test()
    fast_metrics = fast_runner.test()
    slow = load_dump(tmp_path / 'slow.pkl')
    fast = load_dump(tmp_path / 'fast.pkl')
    assert len(slow) == len(fast) == 12
    for s, f in zip(slow, fast):
        assert s['episode_index'] == f['episode_index']
        assert torch.allclose(s['pred_score'], f['pred_score'], atol=1e-5)
        assert torch.equal(s['pred_label'], f['pred_label'])
        for key in ('rgb_score', 'flow_score', 'reliability'):
            if key in s:
                assert torch.allclose(s[key], f[key], atol=1e-5), key
    # nan_ok: the ASI selection metrics are NaN without disagreements
    assert slow_metrics == pytest.approx(fast_metrics, nan_ok=True)


class LogRecorder(logging.Handler):
    """Collects the messages logged to a runner's logger."""

    def __init__(self, logger):
        super().__init__()
        self.messages = []
        logger.addHandler(self)

    def emit(self, record):
        self.messages.append(record.getMessage())


def count_embed_calls(model):
    """Wrap ``model.embed_videos`` to count its calls (``calls[0]``)."""
    calls, original = [0], model.embed_videos

    def counted(batch):
        calls[0] += 1
        return original(batch)

    model.embed_videos = counted
    return calls


@pytest.mark.slow
def test_embeddings_file_keyed_on_weights_and_pipeline(frame_tree, tmp_path):
    emb = tmp_path / 'emb.pth'
    runner, _ = run_test(
        frame_tree,
        tmp_path / 'a',
        'CachedEpisodeTestLoop',
        tmp_path / 'a.pkl',
        embeddings_file=str(emb))
    calls, log = count_embed_calls(runner.model), LogRecorder(runner.logger)
    first = runner.test()
    saved = torch.load(emb, weights_only=True)
    assert saved['features'].shape[:2] == (24, 3)  # 24 videos, 3 frames
    assert saved['model_hash'] == weights_hash(runner.model)
    # the saved features are each video's own, in dataset order
    videos = runner.test_loop.dataloader.dataset.dataset
    assert saved['video_keys'] == [
        runner.test_loop.dataloader.dataset.video_key(i)
        for i in range(len(videos))
    ]
    with torch.no_grad():
        for i in (0, 13, 23):
            alone = runner.model.embed_videos(pseudo_collate([videos[i]]))
            torch.testing.assert_close(
                saved['features'][i], alone[0], atol=1e-5, rtol=1e-5)
    assert calls[0] > 0 and not list(tmp_path.glob('*.partial'))

    # same weights and pipeline: loaded, the backbone does not run
    calls[0] = 0
    assert runner.test() == pytest.approx(first, nan_ok=True)
    assert calls[0] == 0
    assert any('loaded 24 video embeddings' in m for m in log.messages)

    # one weight changed: recomputed and saved, other features
    with torch.no_grad():
        runner.model.backbone.conv1.conv.weight[0, 0, 0, 0] += 1.0
    runner.test()
    assert calls[0] > 0
    assert any('recomputing: weights changed' in m for m in log.messages)
    again = torch.load(emb, weights_only=True)
    assert again['model_hash'] == weights_hash(runner.model) \
        != saved['model_hash']
    assert again['pipeline_hash'] == saved['pipeline_hash']
    assert not torch.allclose(again['features'], saved['features'])

    # the same weights through another pipeline: recomputed
    pipeline = PIPELINE[:2] + [
        dict(type='Resize', scale=(24, 24), keep_ratio=False)
    ] + PIPELINE[2:]
    other, _ = run_test(
        frame_tree,
        tmp_path / 'b',
        'CachedEpisodeTestLoop',
        tmp_path / 'b.pkl',
        pipeline=pipeline,
        embeddings_file=str(emb))
    other.model.load_state_dict(runner.model.state_dict())
    other_calls, other_log = (count_embed_calls(other.model),
                              LogRecorder(other.logger))
    other.test()
    assert other_calls[0] > 0
    assert any('recomputing: pipeline changed' in m
               for m in other_log.messages)
    last = torch.load(emb, weights_only=True)
    assert last['model_hash'] == again['model_hash']
    assert last['pipeline_hash'] != again['pipeline_hash']
    assert last['video_keys'] == again['video_keys']
    assert not torch.allclose(last['features'], again['features'])


@pytest.mark.parametrize('content', ['checkpoint', 'text'])
def test_embeddings_file_not_ours_is_refused(frame_tree, tmp_path, content):
    emb = tmp_path / 'model.pth'
    if content == 'checkpoint':
        torch.save(dict(state_dict=dict(w=torch.ones(2))), emb)
    else:
        emb.write_text('my notes\n')
    before = emb.read_bytes()
    runner, _ = run_test(
        frame_tree,
        tmp_path / 'a',
        'CachedEpisodeTestLoop',
        tmp_path / 'a.pkl',
        embeddings_file=str(emb))
    with pytest.raises(
            RefuseOverwriteError,
            match=r'model\.pth exists but was not written by '
            'CachedEpisodeTestLoop'):
        runner.test()
    assert emb.read_bytes() == before


def test_weights_hash_sees_every_tensor():
    """Equal for equal values; any one element of a parameter, a buffer or
    a non-persistent buffer (not in ``state_dict``) changes it."""
    model = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.BatchNorm1d(2))
    model.register_buffer('mean', torch.zeros(3), persistent=False)
    base = weights_hash(model)
    clone = copy.deepcopy(model)
    assert weights_hash(clone) == base
    for tensor in (clone[0].weight, clone[1].running_var, clone.mean):
        with torch.no_grad():
            tensor.view(-1)[-1] += 1e-3
        assert weights_hash(clone) != base
        with torch.no_grad():
            tensor.view(-1)[-1] -= 1e-3


class IterRecorder(Hook):
    """Records the ``batch_idx`` and chunk size of every test iteration."""

    def __init__(self):
        self.iters = []

    def after_test_iter(self,
                        runner,
                        batch_idx,
                        data_batch=None,
                        outputs=None):
        assert len(outputs) == len(data_batch['data_samples'])
        self.iters.append((batch_idx, len(outputs)))


@pytest.mark.slow
def test_chunk_size_does_not_change_predictions(frame_tree, tmp_path):
    """Chunks of 5 of the 12 episodes (5 + 5 + 2) predict what chunks of 1
    do; hooks run once per chunk."""
    runs, state = {}, None
    for size in (1, 5):
        runner, _ = run_test(
            frame_tree,
            tmp_path / str(size),
            'CachedEpisodeTestLoop',
            tmp_path / f'{size}.pkl',
            AMFIR,
            PAIRED_PIPELINE,
            episode_batch_size=size)
        if state is None:
            with torch.no_grad():  # so that pi differs per query
                torch.nn.init.normal_(runner.model.asi.mlp[-1].weight)
            state = runner.model.state_dict()
        runner.model.load_state_dict(state)  # the same weights
        recorder = IterRecorder()
        runner.register_hook(recorder)
        metrics = runner.test()
        runs[size] = (metrics, recorder.iters,
                      load_dump(tmp_path / f'{size}.pkl'))
    assert runs[1][1] == [(i, 1) for i in range(12)]
    assert runs[5][1] == [(0, 5), (1, 5), (2, 2)]
    assert runs[1][0] == pytest.approx(runs[5][0], nan_ok=True)
    one, five = runs[1][2], runs[5][2]
    assert len({float(r['reliability'][0, 0]) for r in one}) > 1
    assert [r['episode_index'] for r in five] == list(range(12))
    for a, b in zip(one, five):
        assert a['episode_index'] == b['episode_index']
        for key in ('pred_score', 'rgb_score', 'flow_score', 'reliability'):
            torch.testing.assert_close(a[key], b[key])
        assert torch.equal(a['pred_label'], b['pred_label'])


# what the video loader's worker_init_fn and collate_fn (registered, as a
# config names them, in MMEngine's FUNCTIONS) leave in each batch
WORKER_MARK = None


@FUNCTIONS.register_module(name='cached_loop_test_mark_worker', force=True)
def mark_worker(worker_id, tag):
    """worker_init_fn: remember ``(tag, worker_id)`` in this worker."""
    global WORKER_MARK
    WORKER_MARK = (tag, worker_id)


@FUNCTIONS.register_module(name='cached_loop_test_collate', force=True)
def tagged_collate(data_batch, tag):
    """pseudo_collate, the batch tagged with ``tag``, the worker's mark and
    the collating process."""
    batch = pseudo_collate(data_batch)
    batch['collated_by'] = (tag, WORKER_MARK, os.getpid())
    return batch


@pytest.mark.parametrize('given', ['config', 'built_loader'])
def test_video_loader_takes_the_dataloader_settings(frame_tree, tmp_path,
                                                    given):
    """The test dataloader's ``collate_fn``, ``worker_init_fn`` and
    ``num_workers`` (from a config, or from a built loader) load the
    videos: 24 videos in batches of ``video_batch_size`` 5, collated in a
    worker process that ``worker_init_fn`` marked."""
    if given == 'config':
        loader = dict(
            dataset=episodic(frame_tree),
            batch_size=1,
            num_workers=1,
            sampler=dict(type='DefaultSampler', shuffle=False),
            collate_fn=dict(type='cached_loop_test_collate', tag='config'),
            worker_init_fn=dict(
                type='cached_loop_test_mark_worker', tag='seeded'))
    else:
        episodes = DATASETS.build(episodic(frame_tree))
        episodes.full_init()
        loader = DataLoader(
            episodes,
            batch_size=1,
            num_workers=1,
            sampler=DefaultSampler(episodes, shuffle=False),
            collate_fn=partial(tagged_collate, tag='built_loader'),
            worker_init_fn=partial(mark_worker, tag='seeded'))
    runner, _ = run_test(
        frame_tree,
        tmp_path / 'work',
        'CachedEpisodeTestLoop',
        tmp_path / 'out.pkl',
        test_dataloader=loader,
        video_batch_size=5)
    batches, embed_videos = [], runner.model.embed_videos

    def recording(batch):
        batches.append((len(batch['inputs']), batch.pop('collated_by')))
        return embed_videos(batch)

    runner.model.embed_videos = recording
    metrics = runner.test()
    assert [size for size, _ in batches] == [5, 5, 5, 5, 4]
    for _, (tag, worker_mark, pid) in batches:
        assert (tag, worker_mark) == (given, ('seeded', 0))
        assert pid != os.getpid()
    assert metrics['fewshot/num_episodes'] == 12
    assert [r['episode_index']
            for r in load_dump(tmp_path / 'out.pkl')] == list(range(12))
