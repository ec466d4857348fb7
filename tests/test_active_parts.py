"""The parts that give AMFIR's active pieces something to act on: the
temporal adapter, AMD's weights and gap, the per-episode evidence ASI reads;
each against a hand (numpy) computation."""
import math

import numpy as np
import pytest
import torch
from mmengine.registry import DefaultScope

import amfir_mm  # noqa: F401
from amfir_mm.models.fusion import (ActiveSampleInference, episode_evidence,
                                    support_statistics)
from amfir_mm.models.heads import PrototypeHead
from amfir_mm.models.losses import AMDLoss
from amfir_mm.models.necks import TemporalAdapter
from conftest import feature_episode, tiny_amfir


@pytest.fixture(autouse=True)
def mmaction_scope():
    with DefaultScope.overwrite_default_scope('mmaction'):
        yield


def randomised_adapter(channels=6, rank=3, kernel=3, seed=0):
    torch.manual_seed(seed)
    adapter = TemporalAdapter(channels, rank=rank, kernel_size=kernel).double()
    torch.nn.init.normal_(adapter.up.weight)
    torch.nn.init.normal_(adapter.up.bias)
    return adapter


def np_gelu(x):
    from scipy.special import erf
    return 0.5 * x * (1 + erf(x / math.sqrt(2)))


def test_adapter_starts_as_identity():
    adapter = TemporalAdapter(8, rank=2)
    x = torch.randn(3, 4, 5, 8)
    torch.testing.assert_close(adapter(x), x)
    adapter.init_weights()  # stays the identity after init_weights
    torch.testing.assert_close(adapter(x), x)


def test_adapter_by_hand():
    adapter = randomised_adapter()
    x = torch.randn(2, 5, 6, dtype=torch.float64)  # 2 videos, T=5, C=6
    wd, bd = adapter.down.weight.detach().numpy(), adapter.down.bias.detach(
    ).numpy()
    wt, bt = adapter.temporal.weight.detach().numpy(
    ), adapter.temporal.bias.detach().numpy()  # (r, r, k)
    wu, bu = adapter.up.weight.detach().numpy(), adapter.up.bias.detach(
    ).numpy()
    expected = np.empty((2, 5, 6))
    for v in range(2):
        h = x[v].numpy() @ wd.T + bd  # (T, r)
        padded = np.pad(h, ((1, 1), (0, 0)))
        conv = np.stack([
            sum(wt[:, :, j] @ padded[t + j] for j in range(3)) + bt
            for t in range(5)
        ])
        expected[v] = x[v].numpy() + np_gelu(conv) @ wu.T + bu
    np.testing.assert_allclose(
        adapter(x).detach().numpy(), expected, rtol=1e-9, atol=1e-9)
    with pytest.raises(ValueError, match='7 channels'):
        adapter(torch.randn(2, 5, 7, dtype=torch.float64))
    with pytest.raises(ValueError, match='odd'):
        TemporalAdapter(6, kernel_size=2)


def meta(ways=2, shots=2, queries=1):
    return dict(num_ways=ways, num_shots=shots, num_queries=queries)


def test_head_adapts_features_in_both_paths():
    """Gathered-feature and cached logits of a head with an adapter equal
    cosine prototypes of the adapted features computed in numpy."""
    adapter = randomised_adapter()
    head = PrototypeHead(temperature=0.5).double()
    head.adapter = adapter
    frames, channels = 5, 6
    videos = torch.randn(8, frames, channels, dtype=torch.float64)
    order = torch.tensor([[0, 1, 2, 3, 4, 5], [7, 6, 5, 4, 3, 2]])  # (E, V)
    feats = videos[order].flatten(1, 2)  # (E, V * T, C)
    logits = head.batch_logits(feats, meta())
    cached = head.batch_logits(head.cache_videos(videos), meta(), order)
    adapted = adapter(videos).detach().numpy().mean(1)  # (8, C)
    for e in range(2):
        emb = adapted[order[e].numpy()]
        protos = emb[:4].reshape(2, 2, channels).mean(1)
        cos = (emb[4:] / np.linalg.norm(emb[4:], axis=1, keepdims=True)) @ (
            protos / np.linalg.norm(protos, axis=1, keepdims=True)).T
        np.testing.assert_allclose(
            logits[e].detach().numpy(), -(1 - cos) / 0.5, rtol=1e-6)
        np.testing.assert_allclose(
            cached[e].detach().numpy(), -(1 - cos) / 0.5, rtol=1e-6)


def np_kl(p, q):
    return float(np.sum(p * (np.log(p) - np.log(q))))


def np_softmax(x):
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def test_amd_gap_distils_only_clear_teachers():
    temp = 2.0
    z = np.array([[[2.0, 0.5, -1.0], [0.3, 0.1, 0.2]],
                  [[0.0, 1.0, 0.5], [1.5, -0.5, 0.0]]])
    w = np.array([[0.8, 0.2], [0.6, 0.4]])
    p = np_softmax(z / temp)
    # gap 0.5: only query 0, only rgb -> flow
    expected = temp**2 * 0.8 * np_kl(p[0, 0], p[0, 1]) / 2
    loss = AMDLoss(
        temperature=temp, gap=0.5)(torch.from_numpy(z), torch.from_numpy(w))
    assert float(loss) == pytest.approx(expected, rel=1e-10)
    # gap 0: every query, both directions
    full = temp**2 * np.mean([
        w[q, 0] * np_kl(p[q, 0], p[q, 1]) + w[q, 1] * np_kl(p[q, 1], p[q, 0])
        for q in range(2)
    ])
    assert float(
        AMDLoss(temperature=temp)(torch.from_numpy(z),
                                  torch.from_numpy(w))) == pytest.approx(
                                      full, rel=1e-10)
    with pytest.raises(ValueError, match='gap'):
        AMDLoss(gap=1.0)


@pytest.mark.parametrize('weights', ['target', 'uniform', 'reliability'])
def test_amd_weights_by_hand(weights):
    model = tiny_amfir(amd_weights=weights)
    feats, sample = feature_episode()
    out = model.episode_outputs(feats, [sample])[0]
    labels = sample.gt_label
    losses = model.episode_losses(out, labels)
    log_probs = out['log_probs'].detach().double().numpy()  # (M, 2, N)
    probs = np.exp(log_probs)
    if weights == 'target':  # softmax(-G / T), G = CE + entropy, T = 1
        risk = -log_probs[np.arange(len(labels)), :, labels.numpy()]
        entropy = -(probs * log_probs).sum(-1)
        w = np_softmax(-(risk + entropy))
    else:  # untrained ASI net: pi = 1/2, as uniform
        w = np.full((len(labels), 2), 0.5)
    soft = np_softmax(out['logits'].detach().double().numpy() / 2.0)
    expected = 4.0 * np.mean([
        w[q, 0] * np_kl(soft[q, 0], soft[q, 1]) +
        w[q, 1] * np_kl(soft[q, 1], soft[q, 0]) for q in range(len(labels))
    ])
    assert float(losses['loss_amd']) == pytest.approx(expected, rel=1e-4)
    if weights == 'target':  # r is not 1/2: the test tells them apart
        assert np.abs(w - 0.5).max() > 0.01


def test_amd_trains_the_adapters():
    """With adapters AMD's gradient reaches representation weights of the
    student (W_up starts at zero, so its gradient is the first to move)."""
    model = tiny_amfir(amd_weights='uniform')
    feats, sample = feature_episode()
    out = model.episode_outputs(feats, [sample])[0]
    model.episode_losses(out, sample.gt_label)['loss_amd'].backward()
    for m in ('rgb', 'flow'):
        grad = model.branches[m].cls_head.adapter.up.weight.grad
        assert grad is not None and grad.abs().sum() > 0
    with pytest.raises(ValueError, match='amd_weights'):
        tiny_amfir(amd_weights='best')


def test_support_statistics_by_hand():
    # 2 classes x 2 shots in 2-D
    support = torch.tensor([[[1.0, 0.0], [0.8, 0.6], [0.0, 1.0], [0.6, 0.8]]],
                           dtype=torch.float64)
    stats = support_statistics(support, 2, 2)[0].numpy()
    unit = support[0].numpy() / np.linalg.norm(
        support[0].numpy(), axis=1, keepdims=True)
    protos = unit.reshape(2, 2, 2).mean(1)
    protos /= np.linalg.norm(protos, axis=1, keepdims=True)
    assert stats[0] == pytest.approx(1 - protos[0] @ protos[1])
    # leave-one-out: each support's own prototype is its classmate
    own = [1 - unit[i] @ unit[i ^ 1] for i in range(4)]
    other = [1 - unit[i] @ protos[1 - i // 2] for i in range(4)]
    loo_right = np.mean([o < b for o, b in zip(own, other)])
    assert stats[1] == pytest.approx(loo_right)
    assert stats[2] == pytest.approx(
        np.mean([o / b for o, b in zip(own, other)]))
    # one shot: no leave-one-out prototype
    one = support_statistics(support[:, [0, 2]], 2, 1)[0]
    assert float(one[0]) == pytest.approx(1.0)  # orthogonal prototypes
    assert float(one[1]) == 0 and float(one[2]) == 0


def test_episode_evidence_by_hand():
    # 1 episode, 3 queries, 2 modalities, 3 classes
    logits = torch.tensor([[[[-1.0, -2.0, -4.0], [-1.0, -1.5, -3.0]],
                            [[-3.0, -2.5, -1.0], [-2.0, -1.0, -1.2]],
                            [[-1.0, -1.1, -1.2], [-5.0, -1.0, -3.0]]]])
    tau = torch.tensor([0.5, 2.0])
    ev = episode_evidence(logits, tau, ['distance_margin', 'episode_rank'])
    margins = np.array([[1.0 * 0.5, 0.5 * 2.0], [1.5 * 0.5, 0.2 * 2.0],
                        [0.1 * 0.5, 2.0 * 2.0]])
    np.testing.assert_allclose(ev[0, :, :2].numpy(), margins, rtol=1e-6)
    ranks = np.array([[0.5, 0.5], [1.0, 0.0], [0.0, 1.0]])
    np.testing.assert_allclose(ev[0, :, 2:].numpy(), ranks)
    support = [torch.randn(1, 3, 4), torch.randn(1, 3, 4)]
    ev = episode_evidence(logits, tau,
                          ['prototype_spread', 'support_consistency'], support,
                          3, 1)
    assert ev.shape == (1, 3, 6)
    spreads = [float(support_statistics(s, 3, 1)[0, 0]) for s in support]
    np.testing.assert_allclose(ev[0, 1, :2].numpy(), spreads, rtol=1e-6)
    assert torch.all(ev[..., 2:] == 0)  # K = 1
    with pytest.raises(ValueError, match='support embedding'):
        episode_evidence(logits, tau, ['prototype_spread'])
    with pytest.raises(ValueError, match='unknown'):
        ActiveSampleInference(episode_evidence=('colour', ))


def test_asi_reads_episode_evidence():
    asi = ActiveSampleInference(
        episode_evidence=('distance_margin', 'episode_rank'),
        normalize_evidence=True,
        hidden_channels=4)
    assert asi.mlp[0].in_features == 2 * 5 + 2 * 2
    lp = torch.randn(6, 2, 3).log_softmax(-1)
    with pytest.raises(ValueError, match='episode evidence'):
        asi(lp)
    torch.nn.init.normal_(asi.mlp[-1].weight)
    ev = torch.randn(6, 4)
    first = asi(lp, episode=ev)
    changed = ev.clone()
    changed[:, 0] += torch.arange(6.0)
    assert not torch.allclose(first, asi(lp, episode=changed))


def test_recognizer_feeds_episode_evidence_to_asi():
    model = tiny_amfir(
        asi=dict(
            episode_evidence=('distance_margin', 'prototype_spread'),
            hidden_channels=4))
    feats, sample = feature_episode(shots=2)
    model.eval()
    out = model.batch_outputs(feats, sample.metainfo)
    ev = out['episode_evidence']
    assert ev.shape == (1, 6, 4)  # 3 ways x 2 queries
    logits = out['logits'][0]
    top = logits.topk(2, -1).values
    margins = (top[..., 0] - top[..., 1]) * 0.5
    torch.testing.assert_close(ev[0, :, :2], margins)
    # the spread of each modality's support set from the pooled features
    frames = feats['rgb'].unflatten(1, (12, 2)).mean(2)  # (1, V, C)
    support = frames[:, :6]
    assert float(ev[0, 0, 2]) == pytest.approx(
        float(support_statistics(support, 3, 2)[0, 0]), rel=1e-5)
    # cached path: the same evidence
    cache = model.cache_videos({
        m: f.unflatten(1, (12, 2))[0]
        for m, f in feats.items()
    })
    cached = model.batch_outputs(cache, sample.metainfo,
                                 torch.arange(12)[None])
    torch.testing.assert_close(cached['episode_evidence'], ev)
