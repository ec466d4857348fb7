"""Paired RGB + flow transforms (amfir_mm.datasets.transforms.paired)."""
import copy
from pathlib import Path

import cv2
import numpy as np
import pytest
from mmengine.dataset import Compose, pseudo_collate
from mmengine.registry import init_default_scope

import amfir_mm.datasets.transforms  # noqa: F401 (registers the transforms)
from amfir_mm.datasets.transforms.paired import (PairedRawFrameDecode,
                                                 paired_flow_indices)
from amfir_mm.flow import DISFlowEstimator, dequantize_flow, quantize_flow
from amfir_mm.flow.extraction import ExtractionOptions, run_extraction
from amfir_mm.flow.sources import FlowSource

SHARED = Path(__file__).resolve().parents[1].parent / 'shared'
SSV2_MINI = SHARED / 'data' / 'ssv2_mini'
FIXTURES = SHARED / 'data' / 'fixtures' / 'mmaction2'
NUM_FRAMES = 10
SIZE = 64

TRAIN_PIPELINE = [
    dict(type='SampleFrames', clip_len=4, frame_interval=2, num_clips=1),
    dict(type='PairedRawFrameDecode'),
    dict(type='StackRGBFlow'),
    dict(type='RandomResizedCrop'),
    dict(type='Resize', scale=(48, 48), keep_ratio=False),
    dict(type='Flip', flip_ratio=0.5),
    dict(type='SplitRGBFlow'),
    dict(type='PairedFormatShape', input_format='NCHW'),
    dict(type='PackActionInputs', collect_keys=('imgs', 'flow')),
]


@pytest.fixture(autouse=True)
def mmaction_scope():
    init_default_scope('mmaction')


@pytest.fixture
def coded_rawframes(tmp_path):
    """Lossless (PNG) rawframes whose pixels tell what they are.

    RGB frame i: R = 10 * i, G = 2 * x, B = 2 * y.
    Flow field k (k = 1..N-1): x = 2 * y + 10 * k, y = 2 * x + 10 * k.
    So after any shared crop/resize/flip: flow_y - G = 10 * k and
    flow_x - B = 10 * k (or 255 - flow_x - B = 10 * k when flipped).
    """
    ramp_y, ramp_x = np.mgrid[0:SIZE, 0:SIZE].astype(np.uint8) * 2
    for i in range(1, NUM_FRAMES + 1):
        rgb = np.stack([np.full_like(ramp_x, 10 * i), ramp_x, ramp_y], -1)
        cv2.imwrite(str(tmp_path / f'img_{i:05d}.png'), rgb[..., ::-1])
    for k in range(1, NUM_FRAMES):
        cv2.imwrite(str(tmp_path / f'x_{k:05d}.png'), ramp_y + 10 * k)
        cv2.imwrite(str(tmp_path / f'y_{k:05d}.png'), ramp_x + 10 * k)
    return tmp_path


def data_info(frame_dir, **kwargs):
    info = dict(
        frame_dir=str(frame_dir),
        total_frames=NUM_FRAMES,
        filename_tmpl='img_{:05d}.png',
        start_index=1,
        label=3,
        modality='RGB')
    info.update(kwargs)
    return info


def png_pipeline(pipeline):
    pipeline = copy.deepcopy(pipeline)
    for step in pipeline:
        if step['type'] == 'PairedRawFrameDecode':
            step['flow_tmpl'] = '{}_{:05d}.png'
    return Compose(pipeline)


def test_edge_rule():
    inds = np.array([1, 5, 9, 10])
    np.testing.assert_array_equal(
        paired_flow_indices(inds, start_index=1, num_flows=9), [1, 5, 9, 9])
    np.testing.assert_array_equal(
        paired_flow_indices(np.array([0, 7]), start_index=0, num_flows=7),
        [0, 6])
    with pytest.raises(ValueError, match='at least 2 frames'):
        paired_flow_indices(inds, start_index=1, num_flows=0)


def test_decode_same_indices_and_edge_frame(coded_rawframes):
    results = PairedRawFrameDecode(flow_tmpl='{}_{:05d}.png')(
        data_info(coded_rawframes, frame_inds=np.array([1, 5, 9, 10, 10])))
    assert [int(f[0, 0, 0]) // 10
            for f in results['imgs']] == [1, 5, 9, 10, 10]
    flow_ids = [int(f[0, 0, 1]) // 10 for f in results['flow']]
    assert flow_ids == [1, 5, 9, 9, 9]  # frame 10 uses the last field, 9
    assert results['flow'][0].shape == (SIZE, SIZE, 2)
    assert results['flow'][0].dtype == np.uint8
    assert results['img_shape'] == (SIZE, SIZE)


@pytest.mark.parametrize('flip_ratio', [0.0, 1.0])
@pytest.mark.parametrize('resize', [False, True])
def test_same_indices_crop_and_flip(coded_rawframes, flip_ratio, resize):
    pipeline = copy.deepcopy(TRAIN_PIPELINE)
    pipeline[5]['flip_ratio'] = flip_ratio
    if not resize:  # without interpolation the check below is exact
        del pipeline[4]
    pipeline = png_pipeline(pipeline)
    # cv2's 8-bit bilinear resize rounds in fixed point: +-1 grey level.
    tolerance = 1 if resize else 0
    for seed in range(3):
        np.random.seed(seed)
        packed = pipeline(data_info(coded_rawframes))
        imgs, flow = packed['inputs']['imgs'], packed['inputs']['flow']
        assert imgs.shape[:2] == (4, 3) and flow.shape[:2] == (4, 2)
        assert imgs.shape[2:] == flow.shape[2:]
        if resize:
            assert imgs.shape[2:] == (48, 48)
        assert str(imgs.dtype) == str(flow.dtype) == 'torch.float32'
        imgs, flow = imgs.numpy(), flow.numpy()
        frame_ids = imgs[:, 0].mean(axis=(1, 2)) / 10
        expected_fields = np.minimum(frame_ids, NUM_FRAMES - 1) * 10
        green, blue = imgs[:, 1], imgs[:, 2]
        flow_x, flow_y = flow[:, 0], flow[:, 1]
        if flip_ratio:
            flow_x = 255 - flow_x
            # Flipped: the x ramp (G) now decreases left to right.
            assert (green[:, :, 0] >= green[:, :, -1]).all()
        for t in range(4):
            # Same crop/resize/flip: the coded offsets are constants.
            np.testing.assert_allclose(
                flow_y[t] - green[t], expected_fields[t], atol=tolerance)
            np.testing.assert_allclose(
                flow_x[t] - blue[t], expected_fields[t], atol=tolerance)
        assert packed['data_samples'].gt_label.item() == 3


def test_flip_negates_flow_x_exactly(coded_rawframes):
    decoded = PairedRawFrameDecode(flow_tmpl='{}_{:05d}.png')(
        data_info(coded_rawframes, frame_inds=np.array([2, 3])))
    flips = [
        Compose([
            dict(type='StackRGBFlow'),
            dict(type='Flip', flip_ratio=r),
            dict(type='SplitRGBFlow')
        ])(copy.deepcopy(decoded)) for r in (0.0, 1.0)
    ]
    for plain, flipped in zip(flips[0]['flow'], flips[1]['flow']):
        plain_px = dequantize_flow(plain[..., 0], plain[..., 1])
        flip_px = dequantize_flow(flipped[..., 0], flipped[..., 1])
        mirrored = plain_px[:, ::-1]
        np.testing.assert_allclose(
            flip_px[..., 0], -mirrored[..., 0], atol=1e-5)
        np.testing.assert_array_equal(flip_px[..., 1], mirrored[..., 1])


def test_flow_prefix_and_errors(coded_rawframes, tmp_path):
    rgb_root, flow_root = tmp_path / 'rgb', tmp_path / 'flow'
    (rgb_root / 'v').mkdir(parents=True)
    (flow_root / 'v').mkdir(parents=True)
    for path in coded_rawframes.glob('*.png'):
        root = rgb_root if path.name.startswith('img_') else flow_root
        path.rename(root / 'v' / path.name)
    decode = PairedRawFrameDecode(
        flow_prefix=str(flow_root),
        rgb_prefix=str(rgb_root),
        flow_tmpl='{}_{:05d}.png')
    results = decode(data_info(rgb_root / 'v', frame_inds=np.array([10])))
    assert results['flow_dir'] == str(flow_root / 'v')
    assert int(results['flow'][0][0, 0, 1]) == 90
    (flow_root / 'v' / 'x_00009.png').unlink()
    with pytest.raises(FileNotFoundError, match='x_00009.png'):
        decode(data_info(rgb_root / 'v', frame_inds=np.array([10])))
    with pytest.raises(ValueError, match='not inside rgb_prefix'):
        decode(data_info(tmp_path / 'elsewhere', frame_inds=np.array([1])))


def test_on_the_fly_flow_from_frame_folder(tmp_path):
    rng = np.random.default_rng(0)
    base = cv2.GaussianBlur(
        rng.integers(0, 255, (40, 60, 3), dtype=np.uint8), (0, 0), 1.5)
    frames = [np.roll(base, i, axis=1) for i in range(6)]
    for i, frame in enumerate(frames, start=1):
        cv2.imwrite(str(tmp_path / f'{i:08d}.png'), frame[..., ::-1])
    pipeline = Compose([
        dict(type='FlowPairIndices'),
        dict(type='RawFrameDecode'),
        dict(type='ComputeFlow', estimator=dict(type='DISFlowEstimator')),
    ])
    results = pipeline(
        dict(
            frame_dir=str(tmp_path),
            total_frames=6,
            filename_tmpl='{:08d}.png',
            start_index=1,
            modality='RGB',
            frame_inds=np.array([2, 6, 6])))
    np.testing.assert_array_equal(results['frame_inds'], [2, 6, 6])
    np.testing.assert_array_equal(results['flow_inds'], [2, 5, 5])
    np.testing.assert_array_equal(results['imgs'][1], frames[5])
    estimator = DISFlowEstimator()
    for got, first in zip(results['flow'], [2, 5, 5]):
        expected = np.stack(
            quantize_flow(estimator(frames[first - 1], frames[first])), -1)
        np.testing.assert_array_equal(got, expected)


@pytest.mark.skipif(not FIXTURES.is_dir(), reason='no shared fixtures')
def test_on_the_fly_flow_from_video():
    pipeline = Compose([
        dict(type='DecordInit'),
        dict(type='SampleFrames', clip_len=4, frame_interval=3, num_clips=2),
        dict(type='FlowPairIndices'),
        dict(type='DecordDecode'),
        dict(
            type='ComputeFlow',
            estimator=dict(type='DISFlowEstimator', preset='ultrafast')),
    ] + TRAIN_PIPELINE[2:])
    packed = pipeline(
        dict(
            filename=str(FIXTURES / 'test.avi'),
            start_index=0,
            label=1,
            modality='RGB'))
    assert tuple(packed['inputs']['imgs'].shape) == (8, 3, 48, 48)
    assert tuple(packed['inputs']['flow'].shape) == (8, 2, 48, 48)


@pytest.mark.skipif(not SSV2_MINI.is_dir(), reason='no shared ssv2_mini')
def test_loads_a_converted_ssv2_mini_video(tmp_path):
    video = SSV2_MINI / 'train' / 'train0' / '1561'
    source = FlowSource(str(video), 'train/train0/1561', 'frames')
    summary = run_extraction(
        str(SSV2_MINI),
        str(tmp_path),
        'dis',
        ExtractionOptions(write_rgb=True),
        progress=False,
        sources=[source])
    assert summary.count('done') == 1
    line = (tmp_path / 'annotations.txt').read_text().split()
    assert line == ['train/train0/1561', '8', '0']
    pipeline = Compose(TRAIN_PIPELINE)
    packed = pipeline(
        dict(
            frame_dir=str(tmp_path / line[0]),
            total_frames=int(line[1]),
            filename_tmpl='img_{:05d}.jpg',
            start_index=1,
            label=int(line[2]),
            modality='RGB'))
    imgs, flow = packed['inputs']['imgs'], packed['inputs']['flow']
    assert tuple(imgs.shape) == (4, 3, 48, 48)
    assert tuple(flow.shape) == (4, 2, 48, 48)
    assert 0 <= float(flow.min()) and float(flow.max()) <= 255


def test_batch_through_multimodal_preprocessor(coded_rawframes):
    import torch
    from mmaction.models import MultiModalDataPreprocessor
    pipeline = png_pipeline(TRAIN_PIPELINE)
    batch = [pipeline(data_info(coded_rawframes)) for _ in range(2)]
    from amfir_mm.models.recognizers.amfir_recognizer import \
        DEFAULT_PREPROCESSOR  # AMFIRRecognizer's, for imgs and flow
    preprocessor = MultiModalDataPreprocessor(
        preprocessors=DEFAULT_PREPROCESSOR['preprocessors'])
    data = preprocessor(pseudo_collate(batch))
    assert data['inputs']['imgs'].shape == (2, 4, 3, 48, 48)
    assert data['inputs']['flow'].shape == (2, 4, 2, 48, 48)
    assert data['inputs']['flow'].abs().max() <= 1.0 + 1e-6
    assert data['inputs']['flow'].dtype == torch.float32


def test_flow_magnitude_image_hand_computed():
    from amfir_mm.datasets.transforms import FlowMagnitudeImage
    field = np.array([[[128, 128], [131, 132]], [[0, 128], [255, 255]]],
                     dtype=np.uint8)  # (2, 2, 2)
    out = FlowMagnitudeImage().transform(dict(flow=[field, field]))['flow']
    assert len(out) == 2 and out[0].shape == (2, 2, 3)
    assert out[0].dtype == np.uint8
    np.testing.assert_array_equal(out[0][..., :2], field)
    # 2 * |(3, 4)| = 10; 2 * 128 = 256 -> clipped to 255; 2 * 127 * sqrt(2)
    np.testing.assert_array_equal(out[0][..., 2], [[0, 10], [255, 255]])
