"""AMD's relation knowledge: each query's similarities to the episode's
support videos, distilled between modalities; the loss, the heads'
relations and the gradient path, each against a hand (numpy)
computation."""
import numpy as np
import pytest
import torch
from mmaction.registry import MODELS
from mmengine.registry import DefaultScope

import amfir_mm  # noqa: F401
from amfir_mm.models.heads import (BaseFewShotHead, OTAMHead, PrototypeHead,
                                   TRXHead)
from amfir_mm.models.losses import AMDLoss
from amfir_mm.models.necks import TemporalAdapter
from conftest import feature_episode


@pytest.fixture(autouse=True)
def mmaction_scope():
    with DefaultScope.overwrite_default_scope('mmaction'):
        yield


def np_log_softmax(x):
    x = x - x.max(-1, keepdims=True)
    return x - np.log(np.exp(x).sum(-1, keepdims=True))


def np_distil(scores, w, temp, gap):
    """``(M,)`` per-query ``sum_{m != m'} w_{m->m'} T^2 KL(p_m || p_m')``
    of ``(M, S, D)`` scores, written out query by query."""
    log_p = np_log_softmax(scores / temp)
    num_queries, num_modalities = scores.shape[:2]
    out = np.zeros(num_queries)
    for q in range(num_queries):
        for m in range(num_modalities):
            for s in range(num_modalities):
                if s == m or (gap > 0 and not w[q, m] - w[q, s] > gap):
                    continue
                kl = np.sum(np.exp(log_p[q, m]) * (log_p[q, m] - log_p[q, s]))
                out[q] += w[q, m] * temp**2 * kl
    return out


def random_inputs(queries=6, modalities=2, ways=3, supports=6, seed=0):
    rng = np.random.default_rng(seed)
    logits = rng.normal(size=(queries, modalities, ways)) * 2
    relations = rng.uniform(-1, 1, size=(queries, modalities, supports))
    weights = rng.dirichlet(np.ones(modalities), size=queries)
    return logits, relations, weights


@pytest.mark.parametrize('modalities', [2, 3])
@pytest.mark.parametrize('gap', [0.0, 0.3])
def test_amd_with_relations_by_hand(gap, modalities):
    z, rel, w = random_inputs(modalities=modalities)
    w[0] = np.linspace(0.9, 1.1, modalities) / modalities  # near-equal
    temp, rel_temp, lam = 2.0, 0.2, 0.7
    loss = AMDLoss(
        temperature=temp,
        gap=gap,
        relation_weight=lam,
        relation_temperature=rel_temp,
        loss_weight=1.5)(
            torch.from_numpy(z),
            torch.from_numpy(w),
            relations=torch.from_numpy(rel))
    expected = 1.5 * np.mean(
        np_distil(z, w, temp, gap) + lam * np_distil(rel, w, rel_temp, gap))
    assert float(loss) == pytest.approx(expected, rel=1e-10)
    # the relation term is not negligible: it moves the loss
    assert abs(expected - 1.5 * np.mean(np_distil(z, w, temp, gap))) > 1e-3
    if gap > 0:  # some directions are cut, some kept
        diffs = np.abs(w[:, :, None] - w[:, None, :])
        assert (diffs > gap).any() and ((diffs <= gap) & (diffs > 0)).any()


def test_zero_relation_weight_is_the_posterior_term_alone():
    z, rel, w = random_inputs(seed=1)
    expected = np.mean(np_distil(z, w, 4.0, 0.0))
    default = AMDLoss()
    assert default.relation_weight == 0.0
    for relations in (None, torch.from_numpy(rel)):
        loss = default(
            torch.from_numpy(z), torch.from_numpy(w), relations=relations)
        assert float(loss) == pytest.approx(expected, rel=1e-12)
    assert float(default(torch.from_numpy(z),
                         torch.from_numpy(w))) == pytest.approx(
                             expected, rel=1e-12)


def test_relation_options_are_checked():
    z, rel, w = random_inputs()
    loss = AMDLoss(relation_weight=1.0)
    with pytest.raises(ValueError, match='relations'):
        loss(torch.from_numpy(z), torch.from_numpy(w))
    with pytest.raises(ValueError, match='do not match'):
        loss(
            torch.from_numpy(z),
            torch.from_numpy(w),
            relations=torch.from_numpy(rel[:-1]))
    with pytest.raises(ValueError, match='relation_weight'):
        AMDLoss(relation_weight=-1.0)
    with pytest.raises(ValueError, match='relation_temperature'):
        AMDLoss(relation_temperature=0.0)


def randomised_adapter(channels=6, seed=0):
    torch.manual_seed(seed)
    adapter = TemporalAdapter(channels, rank=3).double()
    torch.nn.init.normal_(adapter.up.weight)
    torch.nn.init.normal_(adapter.up.bias)
    return adapter


def meta(ways=2, shots=2, queries=1):
    return dict(num_ways=ways, num_shots=shots, num_queries=queries)


def np_cosine(a, b):
    a = a / np.linalg.norm(a, axis=-1, keepdims=True)
    b = b / np.linalg.norm(b, axis=-1, keepdims=True)
    return a @ b.T


RELATION_HEADS = {
    'prototype': lambda: PrototypeHead(),
    'prototype_euclidean': lambda: PrototypeHead(metric='euclidean'),
    'otam_pair_table': lambda: OTAMHead(),
    'otam_unit_frames': lambda: OTAMHead(cache_max_mb=0),
    'trx_frames': lambda: TRXHead(6, out_channels=4, cache_max_mb=0),
    'trx_keys_values': lambda: TRXHead(6, out_channels=4),
}


@pytest.mark.parametrize('name', list(RELATION_HEADS))
def test_head_relations_by_hand(name):
    """Cosines of the frame-averaged adapted embeddings, from gathered
    features and from the cache, whatever the head's own metric."""
    head = RELATION_HEADS[name]().double().eval()
    head.adapter = randomised_adapter()
    ways, shots, queries = 2, 2, 1
    videos = torch.randn(9, 5, 6, dtype=torch.float64)  # 9 videos, T=5, C=6
    order = torch.tensor([[0, 1, 2, 3, 4, 5], [8, 6, 5, 4, 3, 7]])  # (E, V)
    adapted = head.adapter(videos).detach().numpy().mean(1)  # (9, C)
    expected = np.stack([
        np_cosine(adapted[o[ways * shots:]], adapted[o[:ways * shots]])
        for o in order.numpy()
    ])  # (E, M, N * K)
    feats = videos[order].flatten(1, 2)  # (E, V * T, C)
    gathered = head.batch_relations(feats, meta(ways, shots, queries))
    assert gathered.shape == (2, ways * queries, ways * shots)
    np.testing.assert_allclose(
        gathered.detach().numpy(), expected, rtol=1e-10, atol=1e-12)
    cache = head.cache_videos(videos)
    if name == 'trx_keys_values':  # tuple keys and values, no embeddings
        with pytest.raises(ValueError, match='cache_max_mb=0'):
            head.batch_relations(cache, meta(ways, shots, queries), order)
        return
    cached = head.batch_relations(cache, meta(ways, shots, queries), order)
    np.testing.assert_allclose(
        cached.detach().numpy(), expected, rtol=1e-10, atol=1e-12)


def test_head_without_video_means_says_so():

    class Pairwise(BaseFewShotHead):

        def distances(self, support, query, num_ways, num_shots):
            return query.new_zeros(*query.shape[:-2], num_ways)

        def cache_features(self, videos):
            return dict(anything=videos)

    head = Pairwise()
    cache = head.cache_videos(torch.randn(6, 2, 4))
    with pytest.raises(TypeError, match='cached_video_means'):
        head.batch_relations(cache, meta(), torch.arange(6)[None])


CHANNELS = 8


def tiny_amfir(**loss_amd):
    """An AMFIR model with adapters in its heads; only the heads run here
    (the backbones are never called)."""
    head = dict(
        type='PrototypeHead',
        temperature=0.5,
        adapter=dict(type='TemporalAdapter', in_channels=CHANNELS, rank=4))
    branch = dict(
        backbone=dict(type='ResNet', depth=18, pretrained=None), cls_head=head)
    torch.manual_seed(0)
    model = MODELS.build(
        dict(
            type='AMFIRRecognizer',
            rgb=branch,
            flow=branch,
            amd_weights='uniform',
            loss_amd=dict(type='AMDLoss', temperature=2.0, **loss_amd)))
    for b in model.branches.values():  # adapters that are no identity
        torch.nn.init.normal_(b.cls_head.adapter.up.weight, std=0.3)
        torch.nn.init.normal_(b.cls_head.adapter.up.bias, std=0.3)
    return model


def episode(ways=3, shots=2, queries=2, frames=3, seed=0):
    return feature_episode(ways, shots, queries, frames, CHANNELS, seed)


def test_recognizer_distils_relations_by_hand():
    ways, shots, queries, frames = 3, 2, 2, 3
    feats, sample = episode(ways, shots, queries, frames)
    model = tiny_amfir(relation_weight=0.5, relation_temperature=0.2)
    out = model.batch_outputs(feats, sample.metainfo)
    relations = out['relations']
    assert relations.shape == (1, ways * queries, 2, ways * shots)
    expected = np.empty((ways * queries, 2, ways * shots))
    for s, m in enumerate(('rgb', 'flow')):
        videos = feats[m][0].unflatten(0, (-1, frames))  # (V, T, C)
        adapted = model.branches[m].cls_head.adapter(videos).detach().numpy()
        emb = adapted.mean(1)
        expected[:, s] = np_cosine(emb[ways * shots:], emb[:ways * shots])
    np.testing.assert_allclose(
        relations[0].detach().numpy(), expected, rtol=1e-5, atol=1e-6)
    # the loss: both terms, uniform teacher weights
    one = model.episode_outputs(feats, [sample])[0]
    losses = model.episode_losses(one, sample.gt_label)
    z = one['logits'].detach().double().numpy()
    w = np.full((ways * queries, 2), 0.5)
    want = np.mean(
        np_distil(z, w, 2.0, 0.0) + 0.5 * np_distil(expected, w, 0.2, 0.0))
    assert float(losses['loss_amd'].detach()) == pytest.approx(want, rel=1e-4)
    # the cached meta-test only predicts: no relations there
    cache = model.cache_videos({
        m: f[0].unflatten(0, (-1, frames))
        for m, f in feats.items()
    })
    cached = model.batch_outputs(cache, sample.metainfo,
                                 torch.arange(ways * (shots + queries))[None])
    assert 'relations' not in cached
    # prediction (eval mode) computes none: they only feed the loss
    model.eval()
    assert 'relations' not in model.batch_outputs(feats, sample.metainfo)


def test_no_relations_without_relation_weight():
    feats, sample = episode()
    model = tiny_amfir()
    assert 'relations' not in model.batch_outputs(feats, sample.metainfo)
    out = model.episode_outputs(feats, [sample])[0]
    z = out['logits'].detach().double().numpy()
    want = np.mean(np_distil(z, np.full((z.shape[0], 2), 0.5), 2.0, 0.0))
    loss = model.episode_losses(out, sample.gt_label)['loss_amd']
    assert float(loss.detach()) == pytest.approx(want, rel=1e-4)


def test_relation_gradient_reaches_only_the_student_adapter():
    """rgb is the clearly more reliable modality for every query (gap
    0.5): the relation term trains flow's adapter, never rgb's."""
    model = tiny_amfir(relation_weight=1.0, gap=0.5)
    feats, sample = episode()
    out = model.episode_outputs(feats, [sample])[0]
    weights = torch.tensor([[0.9, 0.1]]).expand(out['logits'].shape[0], 2)
    # posteriors detached: only the relation term has a gradient
    loss = model.loss_amd(out['logits'].detach(), weights, out['relations'])
    loss.backward()
    student = model.branches['flow'].cls_head.adapter
    teacher = model.branches['rgb'].cls_head.adapter
    for name, param in student.named_parameters():
        assert param.grad is not None and param.grad.abs().sum() > 0, name
    for name, param in teacher.named_parameters():
        assert param.grad is None or not param.grad.any(), name
