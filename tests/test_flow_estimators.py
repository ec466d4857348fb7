"""Flow estimators: accuracy on a known translation, interface, MMFlow."""
import cv2
import numpy as np
import pytest
import torch

from amfir_mm.compat import MissingCompiledOpError
from amfir_mm.flow import (DISFlowEstimator, FarnebackFlowEstimator,
                           MMFlowEstimator, TVL1FlowEstimator,
                           UnsupportedDeviceError, build_flow_estimator,
                           dequantize_flow, quantize_flow)

RAFT_CONFIG = 'mmflow::raft/raft_8xb2_100k_mixed-368x768.py'
SHIFT = (3.0, -2.0)  # pixels, x then y


def shifted_texture_pair(size=(96, 112), shift=SHIFT, seed=0):
    """Two RGB frames of a smooth random texture, the second moved by
    ``shift`` pixels: the true flow is ``shift`` everywhere inside."""
    height, width = size
    noise = np.random.default_rng(seed).random((height, width))
    texture = cv2.GaussianBlur(noise.astype(np.float32), (0, 0), 3)
    texture = (texture - texture.min()) / np.ptp(texture) * 255
    moved = cv2.warpAffine(
        texture,
        np.float32([[1, 0, shift[0]], [0, 1, shift[1]]]), (width, height),
        flags=cv2.INTER_CUBIC,
        borderMode=cv2.BORDER_REFLECT)

    def to_rgb(img):
        return np.repeat(img.clip(0, 255).astype(np.uint8)[..., None], 3, 2)

    return to_rgb(texture), to_rgb(moved)


@pytest.mark.parametrize('cfg', [
    dict(type='TVL1FlowEstimator'),
    dict(type='TVL1FlowEstimator', nscales=3, warps=3, epsilon=0.02),
    dict(type='FarnebackFlowEstimator'),
    dict(type='DISFlowEstimator', preset='medium'),
    dict(type='DISFlowEstimator', preset='fast'),
])
def test_opencv_estimators_recover_translation(cfg):
    frame1, frame2 = shifted_texture_pair()
    flow = build_flow_estimator(cfg)(frame1, frame2)
    assert flow.shape == frame1.shape[:2] + (2, )
    assert flow.dtype == np.float32
    interior = flow[16:-16, 16:-16]
    error = np.abs(interior - np.float32(SHIFT))
    assert np.abs(interior.mean(axis=(0, 1)) - SHIFT).max() < 0.15
    assert np.median(error) < 0.1
    assert np.percentile(error, 95) < 0.5


def test_build_flow_estimator_defaults_and_aliases():
    assert isinstance(build_flow_estimator(None), TVL1FlowEstimator)
    assert isinstance(build_flow_estimator('dis'), DISFlowEstimator)
    assert isinstance(
        build_flow_estimator('farneback'), FarnebackFlowEstimator)
    tvl1 = build_flow_estimator(dict(type='tvl1', nscales=2, warps=1))
    assert (tvl1.nscales, tvl1.warps) == (2, 1)
    dis = DISFlowEstimator('ultrafast')
    assert build_flow_estimator(dis) is dis
    assert repr(dis) == "DISFlowEstimator(preset='ultrafast')"
    with pytest.raises(KeyError):
        build_flow_estimator(dict(type='NoSuchFlowEstimator'))
    with pytest.raises(TypeError):
        build_flow_estimator(3)
    with pytest.raises(ValueError, match='preset'):
        DISFlowEstimator('slow')


def test_estimators_have_their_own_registry():
    from mmaction.registry import MODELS
    from mmengine.registry import DefaultScope

    from amfir_mm.registry import FLOW_ESTIMATORS
    names = ('TVL1FlowEstimator', 'FarnebackFlowEstimator', 'DISFlowEstimator',
             'MMFlowEstimator')
    for name in names:
        assert FLOW_ESTIMATORS.get(name).__name__ == name
        assert MODELS.get(name) is None
    estimator = FLOW_ESTIMATORS.build(
        dict(type='DISFlowEstimator', preset='fast'))
    assert type(estimator) is DISFlowEstimator
    assert estimator.preset == 'fast'
    # Under a runner's ``mmaction`` default scope, a config's type still
    # builds, through the transform that computes flow as through the helper.
    with DefaultScope.overwrite_default_scope('mmaction'):
        built = build_flow_estimator(
            dict(type='DISFlowEstimator', preset='ultrafast'))
        assert type(built) is DISFlowEstimator
        assert built.preset == 'ultrafast'
        from mmaction.registry import TRANSFORMS
        compute = TRANSFORMS.build(
            dict(
                type='ComputeFlow',
                estimator=dict(type='FarnebackFlowEstimator')))
        frame1, frame2 = shifted_texture_pair()
        results = compute(
            dict(
                imgs=[frame1, frame2],
                frame_inds=np.array([0, 1]),
                flow_inds=np.array([0]),
                rgb_frame_inds=np.array([0])))
    assert type(compute._estimator) is FarnebackFlowEstimator
    expected = quantize_flow(FarnebackFlowEstimator()(frame1, frame2))
    np.testing.assert_array_equal(results['flow'][0],
                                  np.stack(expected, axis=-1))


@pytest.mark.parametrize('frame1,frame2,message', [
    (np.zeros((8, 8, 3), np.float32), np.zeros((8, 8, 3), np.uint8), 'uint8'),
    (np.zeros((8, 8), np.uint8), np.zeros((8, 8), np.uint8), r'\(H, W, 3\)'),
    (np.zeros((8, 8, 3), np.uint8), np.zeros(
        (8, 9, 3), np.uint8), 'same shape'),
])
def test_bad_frames_are_rejected(frame1, frame2, message):
    with pytest.raises(ValueError, match=message):
        DISFlowEstimator()(frame1, frame2)


def test_estimate_pairs_matches_single_calls():
    frame1, frame2 = shifted_texture_pair(size=(48, 48))
    estimator = FarnebackFlowEstimator()
    flows = estimator.estimate_pairs([frame1, frame2], [frame2, frame1])
    assert len(flows) == 2
    np.testing.assert_array_equal(flows[0], estimator(frame1, frame2))


def test_opencv_estimators_pickle():
    import pickle
    estimator = DISFlowEstimator()
    frame1, frame2 = shifted_texture_pair(size=(32, 32))
    estimator(frame1, frame2)  # builds the (unpicklable) OpenCV object
    clone = pickle.loads(pickle.dumps(estimator))
    assert clone(frame1, frame2).shape == (32, 32, 2)


def test_quantize_round_trip_error_within_half_step():
    bound = 20.0
    flow = np.random.default_rng(1).uniform(-bound, bound, (40, 50, 2))
    flow_x, flow_y = quantize_flow(flow, bound)
    assert flow_x.dtype == np.uint8 and flow_x.shape == (40, 50)
    restored = dequantize_flow(flow_x, flow_y, bound)
    assert restored.shape == flow.shape and restored.dtype == np.float32
    assert np.abs(restored - flow).max() <= bound / 255 + 1e-5


def test_quantize_convention():
    flow = np.array([[[0.0, -20.0], [20.0, 35.0], [-99.0, 10.0]]])
    flow_x, flow_y = quantize_flow(flow, bound=20)
    # round((f + b) * 255 / 2b), clipped: 0 -> 127.5 -> 128 (half to even)
    assert flow_x.tolist() == [[128, 255, 0]]
    assert flow_y.tolist() == [[0, 255, 191]]
    with pytest.raises(ValueError, match='bound'):
        quantize_flow(flow, bound=0)
    with pytest.raises(ValueError, match=r'\(H, W, 2\)'):
        quantize_flow(np.zeros((4, 4, 3)))


def test_negation_in_quantised_space_is_exact():
    values = np.arange(256, dtype=np.uint8).reshape(16, 16)
    flow = dequantize_flow(values, values, bound=20)
    flipped = dequantize_flow(255 - values, 255 - values, bound=20)
    np.testing.assert_allclose(flipped, -flow, atol=1e-5)


@pytest.fixture(scope='module')
def raft():
    return build_flow_estimator(
        dict(
            type='MMFlowEstimator',
            config=RAFT_CONFIG,
            allow_random_weights=True,
            iters=4,
            batch_size=2))


def test_raft_random_weights_on_cpu(raft):
    assert isinstance(raft, MMFlowEstimator)
    frame1, frame2 = shifted_texture_pair(size=(64, 64))
    flow = raft(frame1, frame2)
    assert flow.shape == (64, 64, 2) and flow.dtype == np.float32
    assert np.isfinite(flow).all()
    # Sizes that are not multiples of 8 are padded and cropped back;
    # batched pairs give the same result as single ones.
    odd1, odd2 = shifted_texture_pair(size=(36, 44))
    flows = raft.estimate_pairs([odd1, odd1, odd2], [odd2, odd2, odd1])
    assert [f.shape for f in flows] == [(36, 44, 2)] * 3
    np.testing.assert_allclose(flows[0], flows[1], atol=1e-4)
    np.testing.assert_allclose(flows[0], raft(odd1, odd2), atol=1e-4)


def test_raft_checkpoint_round_trip(raft, tmp_path):
    checkpoint = tmp_path / 'raft_random.pth'
    torch.save({'state_dict': raft.model.state_dict(), 'meta': {}}, checkpoint)
    loaded = MMFlowEstimator(RAFT_CONFIG, checkpoint=str(checkpoint), iters=4)
    frame1, frame2 = shifted_texture_pair(size=(32, 40))
    np.testing.assert_allclose(
        loaded(frame1, frame2), raft(frame1, frame2), atol=1e-4)


def test_mmflow_missing_checkpoint_is_named(tmp_path):
    missing = str(tmp_path / 'nope.pth')
    with pytest.raises(FileNotFoundError, match='nope.pth'):
        MMFlowEstimator(RAFT_CONFIG, checkpoint=missing)
    with pytest.raises(ValueError, match='allow_random_weights'):
        MMFlowEstimator(RAFT_CONFIG)
    with pytest.raises(FileNotFoundError, match='no_such_config.py'):
        MMFlowEstimator(
            str(tmp_path / 'no_such_config.py'), allow_random_weights=True)


def test_mmflow_compiled_op_model_fails_clearly():
    expected = (MissingCompiledOpError, UnsupportedDeviceError)
    with pytest.raises(expected) as info:
        MMFlowEstimator(
            'mmflow::pwcnet/pwcnet_8xb1_slong_flyingchairs-'
            '384x448.py',
            allow_random_weights=True)
    message = str(info.value)
    assert 'PWCNet' in message or 'pwcnet' in message
    assert 'Correlation' in message
    assert info.value.__suppress_context__  # no chained deep traceback


@pytest.mark.skipif(torch.cuda.is_available(), reason='needs a CPU-only box')
def test_mmflow_cuda_without_gpu_fails_clearly():
    with pytest.raises(UnsupportedDeviceError, match='cuda'):
        MMFlowEstimator(RAFT_CONFIG, allow_random_weights=True, device='cuda')


@pytest.mark.skipif(not torch.cuda.is_available(), reason='needs CUDA')
def test_raft_on_cuda():
    estimator = MMFlowEstimator(
        RAFT_CONFIG, allow_random_weights=True, device='cuda', iters=4)
    frame1, frame2 = shifted_texture_pair(size=(64, 64))
    assert estimator(frame1, frame2).shape == (64, 64, 2)
