"""Few-shot inference on a user's own clips (amfir_mm.apis, tools/
fewshot_infer.py): the scores are the meta-test's, video files of any
length / size work, missing flow falls back to RGB, every failure names
its file or class, and the CLI says what the API says."""
import json
import math
import os
import os.path as osp
import subprocess
import sys

import cv2
import numpy as np
import pytest
import torch
from mmaction.registry import DATASETS, MODELS, TRANSFORMS
from mmengine.config import Config
from mmengine.dataset import Compose, pseudo_collate

from amfir_mm.apis import (CheckpointError, FewShotInferencer, FrameReadError,
                           SupportError, inference_pipelines, read_support_dir)
from amfir_mm.apis.fewshot_inferencer import _test_pipeline
from amfir_mm.datasets.synthetic_shapes import (make_shapes_dataset,
                                                render_video)
from amfir_mm.flow import UnsupportedDeviceError
from amfir_mm.utils.io import RefuseOverwriteError
from conftest import PROJECT_ROOT, load_script

DEMO = str(PROJECT_ROOT / 'configs/demo/amfir_shapes_1shot_r18.py')
EFFL0 = str(PROJECT_ROOT / 'configs/ssv2mini/amfir_ssv2mini_1shot_effl0.py')
CONFIGS = sorted(
    str(p.relative_to(PROJECT_ROOT))
    for p in (PROJECT_ROOT / 'configs').rglob('*.py')
    if '_base_' not in p.parts)


def write_video(path, frames_bgr, fps=12.0):
    """Write ``(T, H, W, 3)`` uint8 BGR frames as an mp4 (MPEG-4) or avi
    (MJPG) with OpenCV."""
    fourcc = 'MJPG' if str(path).endswith('.avi') else 'mp4v'
    height, width = frames_bgr[0].shape[:2]
    writer = cv2.VideoWriter(
        str(path), cv2.VideoWriter_fourcc(*fourcc), fps, (width, height))
    assert writer.isOpened(), path
    for frame in frames_bgr:
        writer.write(np.ascontiguousarray(frame))
    writer.release()
    return str(path)


def shapes_clip(name, seed, num_frames=8, size=64):
    shape, motion = name.split('_')
    return render_video(shape, motion, np.random.default_rng(seed), num_frames,
                        size)


def write_frames(folder, frames_bgr, tmpl='{:08d}.jpg'):
    os.makedirs(folder)
    for t, frame in enumerate(frames_bgr, start=1):
        cv2.imwrite(osp.join(str(folder), tmpl.format(t)), frame)
    return str(folder)


@pytest.fixture(scope='module')
def shapes(tmp_path_factory):
    """The generated shapes dataset, 3 videos per class."""
    root = tmp_path_factory.mktemp('shapes')
    out = make_shapes_dataset(str(root), videos_per_class=3)
    with open(out['test']) as f:
        test_classes = sorted({line.split('/')[0] for line in f if line})
    return dict(out, root=str(root), test_classes=test_classes)


def demo_cfg(shapes):
    cfg = Config.fromfile(DEMO)
    inner = cfg.test_dataloader.dataset.dataset
    inner.ann_file = shapes['test']
    inner.data_prefix = dict(img=shapes['rawframes'])
    return cfg


@pytest.fixture(scope='module')
def checkpoint(tmp_path_factory):
    """The demo model with seeded random weights and a random ASI output
    layer (so that pi differs per query), saved as a checkpoint."""
    cfg = Config.fromfile(DEMO)
    torch.manual_seed(0)
    model = MODELS.build(cfg.model)
    model.init_weights()
    torch.nn.init.normal_(model.asi.mlp[-1].weight, std=0.5)
    torch.nn.init.normal_(model.asi.mlp[-1].bias, std=0.5)
    path = tmp_path_factory.mktemp('ckpt') / 'demo_random.pth'
    torch.save(dict(state_dict=model.state_dict()), path)
    return str(path)


@pytest.fixture(scope='module')
def clips(tmp_path_factory, shapes):
    """mp4 clips of the novel classes: ``support/<class>/a.mp4`` and
    ``b.mp4``, one query per class, a 1-frame query, a 3-frame query and
    a broken file."""
    root = tmp_path_factory.mktemp('clips')
    support = {}
    for c, name in enumerate(shapes['test_classes']):
        folder = root / 'support' / name
        folder.mkdir(parents=True)
        support[name] = [
            write_video(folder / f'{k}.mp4', shapes_clip(name, [7, c, i]))
            for i, k in enumerate('ab')
        ]
    queries = [
        write_video(root / f'q_{name}.mp4', shapes_clip(name, [8, c], size=96))
        for c, name in enumerate(shapes['test_classes'])
    ]
    one_frame = write_video(root / 'one_frame.mp4',
                            shapes_clip(shapes['test_classes'][0], 9)[:1])
    three = write_video(root / 'three.mp4',
                        shapes_clip(shapes['test_classes'][1], 10, 3))
    broken = root / 'broken.mp4'
    broken.write_bytes(b'this is not a video' * 100)
    return dict(
        root=str(root),
        support=support,
        queries=queries,
        one_frame=one_frame,
        three=three,
        broken=str(broken))


@pytest.fixture(scope='module')
def fitted(clips, checkpoint):
    """The demo inferencer fitted on the mp4 support set."""
    return FewShotInferencer(DEMO, checkpoint).fit(clips['support'])


def small_support(clips, root):
    """``root/<class>/a.mp4`` for 2 classes (symlinks): a quick support
    folder."""
    for name in list(clips['support'])[:2]:
        os.makedirs(root / name)
        os.symlink(clips['support'][name][0], root / name / 'a.mp4')
    return str(root)


# the demo's prototype heads, and the standard configs' OTAM and TRX heads
HEADS = dict(
    otam=dict(type='OTAMHead'),
    trx=dict(type='TRXHead', in_channels=512, out_channels=64))


def inferencer_with_head(shapes, checkpoint, head):
    """The demo inferencer (``checkpoint``) or, for another ``head``, the
    demo model with those heads and seeded random weights."""
    cfg = demo_cfg(shapes)
    if head == 'prototype':
        return cfg, FewShotInferencer(cfg, checkpoint)
    for branch in ('rgb', 'flow'):
        cfg.model[branch].cls_head = HEADS[head]
    torch.manual_seed(0)
    return cfg, FewShotInferencer(cfg, None)


@pytest.mark.parametrize('head', [
    'prototype',
    pytest.param('otam', marks=pytest.mark.slow),
    pytest.param('trx', marks=pytest.mark.slow)
])
def test_scores_equal_the_models_episode_path(shapes, checkpoint, head):
    """Support and queries of a meta-test episode: the inferencer's fused,
    per-modality and pi outputs are the model's own (per-episode, uncached)
    predictions for that episode."""
    cfg, inferencer = inferencer_with_head(shapes, checkpoint, head)
    cfg.test_dataloader.dataset.update(
        num_shots=2, num_queries=1, num_episodes=1)
    episodes = DATASETS.build(cfg.test_dataloader.dataset)
    expected = inferencer.model.test_step(pseudo_collate([episodes[0]]))[0]
    names = episodes.dataset.metainfo['classes']
    ids = [osp.join(shapes['rawframes'], v) for v in expected.video_ids]
    classes = [names[c] for c in expected.class_labels]
    support = {c: ids[2 * i:2 * i + 2] for i, c in enumerate(classes)}
    predictions = inferencer.fit(support).predict(ids[10:])

    def table(key):
        return torch.tensor([[p[key][c] for c in classes]
                             for p in predictions])

    torch.testing.assert_close(table('scores'), expected.pred_score)
    for m in ('rgb', 'flow'):
        torch.testing.assert_close(
            torch.tensor([[p['modality_scores'][m][c] for c in classes]
                          for p in predictions]), expected.get(f'{m}_score'))
    pi = torch.tensor([[p['reliability'][m] for m in ('rgb', 'flow')]
                       for p in predictions])
    torch.testing.assert_close(pi, expected.reliability)
    if head == 'prototype':  # the random ASI layer: pi varies per query
        assert pi[:, 0].std() > 0
    assert [p['label'] for p in predictions] == \
        [classes[i] for i in expected.pred_label.tolist()]
    for p in predictions:
        assert math.isclose(sum(p['scores'].values()), 1, abs_tol=1e-5)


@pytest.mark.parametrize('head', [
    pytest.param('prototype', marks=pytest.mark.slow), 'otam',
    pytest.param('trx', marks=pytest.mark.slow)
])
def test_repeating_every_clip_changes_nothing(shapes, clips, checkpoint, head):
    """What unequal clip counts rely on: with each class's clips repeated
    the same number of times, every head scores as without repetition."""
    _, inferencer = inferencer_with_head(shapes, checkpoint, head)
    once = {c: paths[:1] for c, paths in clips['support'].items()}
    twice = {c: paths[:1] * 2 for c, paths in clips['support'].items()}
    queries = clips['queries'][:2]
    expected = inferencer.fit(once).predict(queries)
    got = inferencer.fit(twice).predict(queries)
    assert inferencer.num_shots == 2
    for g, e in zip(got, expected):
        for key in ('scores', 'reliability'):
            assert g[key] == pytest.approx(e[key], abs=1e-5)
        for m in ('rgb', 'flow'):
            assert g['modality_scores'][m] == pytest.approx(
                e['modality_scores'][m], abs=1e-5)


def test_unequal_clip_counts_give_each_clip_equal_weight(
        shapes, clips, checkpoint):
    """Classes of 1, 2 and 3 clips: the RGB posterior equals a hand-made
    prototype classifier over the clips' features (cosine to each class's
    mean embedding, over the head's temperature)."""
    names = shapes['test_classes']
    support = {
        names[0]: clips['support'][names[0]][:1],
        names[1]: clips['support'][names[1]],
        names[2]: clips['support'][names[2]] + [clips['queries'][2]]
    }
    inferencer = FewShotInferencer(DEMO, checkpoint, modalities=['rgb'])
    query = clips['queries'][3]
    got = inferencer.fit(support).predict([query])[0]

    branch = inferencer.model.branches['rgb']

    def embedding(path):
        sample, _ = inferencer.load(path)
        data = inferencer.model.data_preprocessor(pseudo_collate([sample]))
        with torch.no_grad():
            return branch.backbone(data['inputs']['imgs'][0]).mean((0, 2, 3))

    prototypes = torch.stack([
        torch.stack([embedding(p) for p in paths]).mean(0)
        for paths in support.values()
    ])
    cosine = torch.nn.functional.cosine_similarity(
        embedding(query)[None], prototypes)
    expected = ((cosine - 1) / branch.cls_head.temperature).softmax(0)
    torch.testing.assert_close(
        torch.tensor([got['scores'][c] for c in support]),
        expected,
        rtol=1e-4,
        atol=1e-5)
    assert inferencer.num_shots == 6  # each clip repeated 6, 3 and 2 times


def test_missing_flow_falls_back_to_rgb(clips, checkpoint, fitted):
    """A 1-frame query has no flow: RGB alone, pi = (1, 0); its scores and
    those of --modalities rgb are the RGB branch's posterior, which is the
    full model's rgb modality score for a normal query."""
    rgb = FewShotInferencer(
        DEMO, checkpoint, modalities=('rgb', )).fit(clips['support'])
    queries = [clips['one_frame'], clips['queries'][0]]
    full_out = fitted.predict(queries)
    rgb_out = rgb.predict(queries)
    one = full_out[0]
    assert one['reliability'] == {'rgb': 1.0, 'flow': 0.0}
    assert list(one['modality_scores']) == ['rgb']
    assert one['scores'] == one['modality_scores']['rgb']
    for a, b in zip(one['scores'].values(), rgb_out[0]['scores'].values()):
        assert a == pytest.approx(b, abs=1e-6)
    normal = full_out[1]
    assert set(normal['modality_scores']) == {'rgb', 'flow'}
    assert 0 < normal['reliability']['rgb'] < 1
    for c, p in normal['modality_scores']['rgb'].items():
        assert rgb_out[1]['scores'][c] == pytest.approx(p, abs=1e-5)
    assert rgb_out[1]['reliability'] == {'rgb': 1.0, 'flow': 0.0}


def test_an_rgb_config(clips):
    """A single-modality FewShotRecognizer config (RGB frames, ImageNet
    EfficientNet-Lite0, no checkpoint) labels mp4 clips: RGB alone."""
    config = str(PROJECT_ROOT /
                 'configs/fewshot_rgb/rgbproto_ssv2mini_1shot_effl0.py')
    inferencer = FewShotInferencer(config, None)
    assert inferencer.modalities == ('rgb', )
    support = {c: p[:1] for c, p in list(clips['support'].items())[:3]}
    out = inferencer.fit(support).predict(clips['queries'][:2])
    for p in out:
        assert p['label'] in support
        assert p['reliability'] == {'rgb': 1.0, 'flow': 0.0}
        assert p['scores'] == p['modality_scores']['rgb']
        assert math.isclose(sum(p['scores'].values()), 1, abs_tol=1e-5)


def test_any_length_and_size(tmp_path, clips, checkpoint):
    """A 3-frame clip repeats frames exactly as MMAction2's SampleFrames
    samples them; clips of 30 frames, other sizes, and frame folders come
    out at the config's 8 frames of 56 px."""
    inferencer = FewShotInferencer(DEMO, checkpoint)
    sample, with_flow = inferencer.load(clips['three'])
    assert with_flow
    imgs, flow = sample['inputs']['imgs'], sample['inputs']['flow']
    assert imgs.shape == (8, 3, 56, 56) and flow.shape == (8, 2, 56, 56)
    sampled = TRANSFORMS.build(
        dict(type='SampleFrames', clip_len=1, num_clips=8,
             test_mode=True))(dict(total_frames=3,
                                   start_index=0))['frame_inds']
    assert len(set(sampled.tolist())) == 3
    for i in range(8):
        for j in range(8):
            assert torch.equal(imgs[i], imgs[j]) == \
                (sampled[i] == sampled[j])
    long_clip = write_video(tmp_path / 'long.avi',
                            shapes_clip('circle_left', 1, 30, size=120))
    sample, _ = inferencer.load(long_clip)
    assert sample['inputs']['imgs'].shape == (8, 3, 56, 56)
    frames = write_frames(tmp_path / 'frames',
                          shapes_clip('circle_left', 1, 5, size=80))
    sample, _ = inferencer.load(frames)
    assert sample['inputs']['flow'].shape == (8, 2, 56, 56)
    # decord 0.6 cannot decode 72 px wide MPEG-4 frames: PyAV does
    odd = write_video(tmp_path / 'odd.mp4',
                      shapes_clip('cross_up', 2, size=72))
    sample, _ = inferencer.load(odd)
    assert sample['inputs']['imgs'].shape == (8, 3, 56, 56)


@pytest.mark.parametrize('config', CONFIGS)
def test_every_config_reads_videos_and_frame_folders(tmp_path, config):
    """Each config's test pipeline, adapted: a video and a frame folder
    give T frames of the config's crop, with flow where it has flow."""
    cfg = Config.fromfile(str(PROJECT_ROOT / config))
    pipelines = inference_pipelines(_test_pipeline(cfg))
    frames = shapes_clip('square_up', 3, 6, size=96)
    video = write_video(tmp_path / 'clip.mp4', frames)
    folder = write_frames(tmp_path / 'frames', frames, 'img_{:05d}.jpg')
    decoded = TRANSFORMS.build(dict(type='DecordInit'))(
        dict(filename=video, start_index=0, modality='RGB'))
    rawframes = dict(
        frame_dir=folder,
        total_frames=6,
        start_index=1,
        filename_tmpl='img_{:05d}.jpg',
        modality='RGB')
    for reader, results in (('decord', decoded), ('frames', rawframes)):
        for with_flow in (True, False) if pipelines['paired'] else (False, ):
            out = Compose(pipelines['steps'][reader, with_flow])(
                dict(results))['inputs']
            imgs = out['imgs'] if isinstance(out, dict) else out
            crop = imgs.shape[-1]
            assert imgs.shape == (8, 3, crop, crop) and crop >= 56
            if with_flow:
                assert out['flow'].shape[:2] == (8, cfg.model.get(
                    'flow', {}).get('in_channels', 2))
            else:
                assert not isinstance(out, dict) or 'flow' not in out


def test_flow_estimator_is_the_configs_else_dis():
    demo = inference_pipelines(_test_pipeline(Config.fromfile(DEMO)))
    assert demo['estimator'] == dict(type='DISFlowEstimator', preset='medium')
    effl0 = inference_pipelines(_test_pipeline(Config.fromfile(EFFL0)))
    assert effl0['estimator'] == dict(type='DISFlowEstimator')
    steps = [s['type'] for s in effl0['steps']['frames', True]]
    # flow computed after resizing to the config's short side (128 px)
    assert steps[:6] == [
        'SampleFrames', 'FlowPairIndices', 'RawFrameDecode', 'Resize',
        'ComputeFlow', 'StackRGBFlow'
    ]
    assert 'FlowMagnitudeImage' in steps
    rgb = [s['type'] for s in effl0['steps']['decord', False]]
    assert 'ComputeFlow' not in rgb and 'StackRGBFlow' not in rgb
    tvl1 = inference_pipelines(_test_pipeline(Config.fromfile(DEMO)), 'tvl1')
    assert tvl1['estimator'] == dict(type='tvl1')


# How long the demo trains in the end-to-end test (the demo: 300).
TRAIN_ITERS = 60


@pytest.mark.slow
def test_trained_demo_labels_novel_classes_in_mp4_clips(tmp_path):
    """Meta-train the demo briefly, then label mp4 clips (written with
    OpenCV, 96 px, not the 64 px training rawframes) of its 5 novel
    classes from 2 example clips each: well above chance (20%)."""
    from mmengine.runner import Runner
    data = make_shapes_dataset(str(tmp_path / 'shapes'), videos_per_class=6)
    cfg = Config.fromfile(DEMO)
    cfg.work_dir = str(tmp_path / 'work')
    for split in ('train', 'val', 'test'):
        inner = cfg[f'{split}_dataloader'].dataset.dataset
        inner.ann_file = data[split]
        inner.data_prefix = dict(img=data['rawframes'])
    cfg.train_cfg.update(max_iters=TRAIN_ITERS, val_interval=10**6)
    cfg.val_cfg = cfg.val_dataloader = cfg.val_evaluator = None
    cfg.train_dataloader.dataset.num_queries = 1  # half the demo's cost
    cfg.param_scheduler[0].T_max = TRAIN_ITERS
    cfg.default_hooks.checkpoint.update(interval=TRAIN_ITERS, save_best=None)
    cfg.visualizer.vis_backends = [dict(type='LocalVisBackend')]
    Runner.from_cfg(cfg).train()
    with open(data['test']) as f:
        novel = sorted({line.split('/')[0] for line in f if line.strip()})
    clips = tmp_path / 'clips'
    clips.mkdir()
    support = {
        name: [
            write_video(clips / f'{name}_{k}.mp4',
                        shapes_clip(name, [20, c, k], size=96))
            for k in range(2)
        ]
        for c, name in enumerate(novel)
    }
    queries = [(name,
                write_video(clips / f'q_{name}_{k}.mp4',
                            shapes_clip(name, [21, c, k], size=96)))
               for c, name in enumerate(novel) for k in range(8)]
    inferencer = FewShotInferencer(
        DEMO, str(tmp_path / 'work' / f'iter_{TRAIN_ITERS}.pth'))
    predictions = inferencer.fit(support).predict([q for _, q in queries])
    accuracy = np.mean(
        [p['label'] == name for p, (name, _) in zip(predictions, queries)])
    print(f'accuracy on {len(queries)} novel-class mp4 clips: {accuracy}')
    assert accuracy >= 0.5, accuracy


# -- failures: each names its file or class --------------------------------
def test_unreadable_support_clip_is_named(clips, checkpoint):
    inferencer = FewShotInferencer(DEMO, checkpoint)
    (first, (clip, _)), (second, (other,
                                  _)) = list(clips['support'].items())[:2]
    support = {first: [clip, clips['broken']], second: [other]}
    with pytest.raises(FrameReadError, match='broken.mp4'):
        inferencer.fit(support)
    # skipped on request; a class left without clips is named
    inferencer.fit(support, skip_unreadable=True)
    assert inferencer.support_paths == [[clip], [other]]
    support[first] = [clips['broken']]
    with pytest.raises(
            SupportError, match=f"class '{first}' has no "
            'readable clip'):
        inferencer.fit(support, skip_unreadable=True)


def test_support_folder_errors(tmp_path, clips):
    root = tmp_path / 'support'
    with pytest.raises(SupportError, match='support folder not found'):
        read_support_dir(str(root))
    root.mkdir()
    with pytest.raises(SupportError, match='no class folders'):
        read_support_dir(str(root))
    (root / 'wave').mkdir()
    with pytest.raises(SupportError, match="class 'wave'.* is empty"):
        read_support_dir(str(root))
    cv2.imwrite(str(root / 'wave' / '0001.jpg'), np.zeros((8, 8, 3)))
    with pytest.raises(
            SupportError, match="class 'wave'.* holds frames: put each clip"):
        read_support_dir(str(root))
    (root / 'wave' / '0001.jpg').unlink()
    (root / 'wave' / 'notes.txt').write_text('no clip here')
    with pytest.raises(
            SupportError, match="class 'wave'.* holds no video.*notes.txt"):
        read_support_dir(str(root))
    os.symlink(clips['queries'][0], root / 'wave' / 'w.mp4')
    write_frames(root / 'wave' / 'frames', shapes_clip('circle_up', 0, 3))
    assert read_support_dir(str(root)) == {
        'wave': [str(root / 'wave' / 'frames'),
                 str(root / 'wave' / 'w.mp4')]
    }


def test_support_set_errors(clips, checkpoint):
    inferencer = FewShotInferencer(DEMO, checkpoint)
    name, paths = next(iter(clips['support'].items()))
    with pytest.raises(SupportError, match='at least 2 classes'):
        inferencer.fit({name: paths})
    with pytest.raises(SupportError, match="class 'b' has no example"):
        inferencer.fit({name: paths, 'b': []})
    with pytest.raises(
            SupportError, match=f"class '{name}'.*one_frame.mp4 "
            'has one frame'):
        inferencer.fit({name: [clips['one_frame']], 'b': paths})
    counts = {f'c{n}': paths[:1] * n for n in (7, 8, 9)}
    with pytest.raises(SupportError, match='common count, here 504'):
        inferencer.fit(counts)
    with pytest.raises(RuntimeError, match='call fit'):
        FewShotInferencer(DEMO, checkpoint).predict(clips['queries'])
    with pytest.raises(FileNotFoundError, match='checkpoint not found'):
        FewShotInferencer(DEMO, 'missing.pth')
    if not torch.cuda.is_available():
        with pytest.raises(UnsupportedDeviceError, match="device='cuda'"):
            FewShotInferencer(DEMO, checkpoint, device='cuda')
    # a checkpoint of another model: an error, not half-random weights
    other = Config.fromfile(DEMO)
    other.model.rgb.backbone.depth = 34
    with pytest.raises(
            CheckpointError,
            match='demo_random.pth does not fit '
            'the model of .*: (missing|unexpected) key'):
        FewShotInferencer(other, checkpoint)


def test_unreadable_queries_are_named_and_the_others_predicted(
        tmp_path, clips, fitted):
    inferencer = fitted
    missing = str(tmp_path / 'missing.mp4')
    empty = tmp_path / 'empty'
    empty.mkdir()
    queries = [
        clips['queries'][0], clips['broken'], missing,
        str(empty), clips['queries'][1]
    ]
    with pytest.raises(FrameReadError, match='broken.mp4'):
        inferencer.predict(queries)
    out = inferencer.predict(queries, on_error='report')
    assert [o['query'] for o in out] == queries
    assert [('error' in o) for o in out] == [False, True, True, True, False]
    assert 'cannot read video' in out[1]['error'] and \
        clips['broken'] in out[1]['error']
    assert missing in out[2]['error'] and str(empty) in out[3]['error']
    alone = inferencer.predict([queries[0], queries[4]])
    for got, want in zip(alone, (out[0], out[4])):
        assert got['scores'] == pytest.approx(want['scores'], abs=1e-6)


# -- the command line ------------------------------------------------------
@pytest.fixture(scope='module')
def cli():
    return load_script('tools/fewshot_infer.py', 'fewshot_infer')


def test_cli_agrees_with_the_api(tmp_path, clips, checkpoint, fitted, cli,
                                 capsys):
    """The CLI on the support folder and a folder of queries (plus a
    broken one) prints a table and writes what the API predicts."""
    out = tmp_path / 'results.json'
    queries = tmp_path / 'queries'
    queries.mkdir()
    for q in clips['queries']:
        os.symlink(q, queries / osp.basename(q))
    status = cli.main([
        DEMO, checkpoint, '--support',
        osp.join(clips['root'], 'support'), '--query',
        str(queries), clips['broken'], '--out',
        str(out)
    ])
    printed = capsys.readouterr()
    assert status == 1  # one query was unreadable
    assert f'error: cannot read video {clips["broken"]}' in printed.err
    written = json.loads(out.read_text())
    api = fitted
    assert read_support_dir(osp.join(clips['root'], 'support')) == \
        clips['support']
    expected = api.predict(sorted(str(p) for p in queries.iterdir()))
    assert written['classes'] == api.classes
    assert [e['query'] for e in written['errors']] == [clips['broken']]
    assert len(written['predictions']) == len(expected)
    for got, want in zip(written['predictions'], expected):
        assert got['query'] == want['query']
        assert got['label'] == want['label']
        for key in ('scores', 'reliability'):
            assert got[key] == pytest.approx(want[key], abs=1e-6)
        row = next(line for line in printed.out.splitlines()
                   if line.startswith(want['query']))
        assert row.split()[1:3] == [
            want['label'], f'{want["scores"][want["label"]]:.3f}'
        ]
    assert '6/6' in printed.out  # the progress bar: more than 3 queries
    with pytest.raises(RefuseOverwriteError, match='--overwrite'):
        cli.main([
            DEMO, checkpoint, '--support',
            osp.join(clips['root'], 'support'), '--query', clips['queries'][0],
            '--out',
            str(out)
        ])


def run_cli(*args):
    return subprocess.run([sys.executable, 'tools/fewshot_infer.py', *args],
                          cwd=PROJECT_ROOT,
                          capture_output=True,
                          text=True,
                          timeout=300)


@pytest.mark.slow
def test_cli_failures_are_one_line(tmp_path, clips, checkpoint, cli, capsys):
    """An unreadable query, an empty class folder, an unreadable example
    clip: one line on stderr naming it, exit status 1 (the command itself,
    then its main under run_tool in this process)."""
    from amfir_mm.utils.tool import run_tool
    support = small_support(clips, tmp_path / 'small')
    proc = run_cli(DEMO, checkpoint, '--support', support, '--query',
                   clips['broken'])
    assert proc.returncode == 1 and 'Traceback' not in proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith(
        f'FrameReadError: cannot read video {clips["broken"]} (decord: ')

    def error_line(support):
        status = run_tool(cli.main, 'fewshot_infer', [
            DEMO, checkpoint, '--support',
            str(support), '--query', clips['queries'][0]
        ])
        assert status == 1
        return capsys.readouterr().err.strip().splitlines()[-1]

    empty = tmp_path / 'empty'
    (empty / 'clap').mkdir(parents=True)
    (empty / 'wave').mkdir()
    assert error_line(empty) == \
        f"SupportError: class 'clap': {empty / 'clap'} is empty"
    broken = tmp_path / 'broken'
    small_support(clips, broken)
    os.symlink(clips['broken'], next(broken.iterdir()) / 'b.mp4')
    assert error_line(broken).startswith(
        'FrameReadError: cannot read video '
        f'{next(broken.iterdir()) / "b.mp4"} (decord: ')


@pytest.mark.slow
def test_readme_command_on_real_videos(tmp_path, shared_data, cli, capsys):
    """The README's command (ImageNet EfficientNet-Lite0 config, no
    checkpoint) on MMAction2's fixture videos (320x240 at 25 fps, 340x256
    at 30 fps) and a rawframe folder (img_ frames beside x_/y_ flow)."""
    fixtures = shared_data / 'fixtures' / 'mmaction2'
    support = tmp_path / 'support'
    for name, clip in (('first', 'test.mp4'), ('second', 'test.avi')):
        (support / name).mkdir(parents=True)
        os.symlink(fixtures / clip, support / name / clip)
    out = tmp_path / 'out.json'
    status = cli.main([
        EFFL0, 'none', '--support',
        str(support), '--query',
        str(fixtures / 'demo.mp4'),
        str(fixtures / 'imgs'), '--out',
        str(out)
    ])
    assert status == 0
    written = json.loads(out.read_text())
    assert written['classes'] == ['first', 'second'] and not written['errors']
    assert [p['query'] for p in written['predictions']
            ] == [str(fixtures / 'demo.mp4'),
                  str(fixtures / 'imgs')]
    for p in written['predictions']:
        assert p['label'] in ('first', 'second')
        assert math.isclose(sum(p['scores'].values()), 1, abs_tol=1e-5)
        # an untrained ASI net (zero output layer) weighs both equally
        assert p['reliability'] == pytest.approx(dict(rgb=0.5, flow=0.5))
        assert set(p['modality_scores']) == {'rgb', 'flow'}
    assert 'demo.mp4' in capsys.readouterr().out
