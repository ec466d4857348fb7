"""Transductive cross-modal prototype refinement: hand-computed prototypes
and posteriors, a constructed cross-modal episode, and the batched module
against a slow per-episode NumPy loop."""
import math

import numpy as np
import pytest
import torch
from mmaction.registry import MODELS
from mmengine.registry import DefaultScope

import amfir_mm  # noqa: F401
from amfir_mm.models.fusion import (CrossModalSoftKMeans,
                                    cross_modal_reliability, refine_prototypes)
from amfir_mm.models.heads import PrototypeHead


@pytest.fixture(autouse=True)
def mmaction_scope():
    """Build in MMAction2's scope whatever scope earlier tests left."""
    with DefaultScope.overwrite_default_scope('mmaction'):
        yield


def t64(values):
    return torch.tensor(values, dtype=torch.float64)


# -- a slow, independent reference: one episode, one query at a time ------
def reference_episode(support, query, tau, num_ways, num_shots, steps, source,
                      confidence, query_weight, metric,
                      reliability_temperature):
    """One episode in plain NumPy loops.

    ``support``/``query``/``tau``: dicts per modality of ``(N * K, C)``,
    ``(M, C)`` arrays and floats.  Returns ``(log_probs dict (M, N),
    reliability (S,))``.
    """
    modalities = list(support)
    num_queries = len(next(iter(query.values())))
    sup, qry = {}, {}
    for m in modalities:
        sup[m] = np.array(support[m], dtype=np.float64)
        qry[m] = np.array(query[m], dtype=np.float64)
        if metric == 'cosine':
            sup[m] = np.stack([v / np.linalg.norm(v) for v in sup[m]])
            qry[m] = np.stack([v / np.linalg.norm(v) for v in qry[m]])

    def distance(q, p):
        if metric == 'cosine':
            return 1 - float(q @ p) / (np.linalg.norm(q) * np.linalg.norm(p))
        return float(((q - p)**2).sum()) / len(q)

    def posterior(m, protos):
        out = np.zeros((num_queries, num_ways))
        for i in range(num_queries):
            logits = [
                -distance(qry[m][i], protos[c]) / tau[m]
                for c in range(num_ways)
            ]
            top = max(logits)
            exps = [math.exp(v - top) for v in logits]
            out[i] = [v / sum(exps) for v in exps]
        return out

    protos = {
        m: [
            sup[m][c * num_shots:(c + 1) * num_shots].mean(0)
            for c in range(num_ways)
        ]
        for m in modalities
    }
    probs = {m: posterior(m, protos[m]) for m in modalities}
    for _ in range(steps):
        new = {}
        for m in modalities:
            if source == 'self':
                assign = probs[m].copy()
            else:
                others = [b for b in modalities if b != m]
                assign = sum(probs[b] for b in others) / len(others)
            for i in range(num_queries):
                top = assign[i].max()
                if confidence == 'max':
                    assign[i] = assign[i] * top
                elif confidence == 'relative':
                    keep = top >= probs[m][i].max()
                    assign[i] = assign[i] * top if keep else 0.0
                elif confidence is not None and top < confidence:
                    assign[i] = 0.0
            new[m] = []
            for c in range(num_ways):
                total = sup[m][c * num_shots:(c + 1) * num_shots].sum(0)
                mass = float(num_shots)
                for i in range(num_queries):
                    total = total + query_weight * assign[i, c] * qry[m][i]
                    mass += query_weight * assign[i, c]
                new[m].append(total / mass)
        protos = new
        probs = {m: posterior(m, protos[m]) for m in modalities}
    if len(modalities) == 1:
        reliability = np.ones(1)
    else:
        agree = []
        for a in modalities:
            values = []
            for b in modalities:
                if b == a:
                    continue
                values.append(
                    np.mean([
                        probs[a][i, probs[b][i].argmax()]
                        for i in range(num_queries)
                    ]))
            agree.append(np.mean(values))
        exps = np.exp(np.array(agree) / reliability_temperature)
        reliability = exps / exps.sum()
    return {m: np.log(probs[m]) for m in modalities}, reliability


# -- refine_prototypes ----------------------------------------------------
def test_refine_prototypes_by_hand():
    # 2-way 2-shot, C = 2; class 0 supports [1, 0], [3, 0] (sum [4, 0]),
    # class 1 supports [0, 2], [0, 4] (sum [0, 6])
    support = t64([[[1, 0], [3, 0], [0, 2], [0, 4]]] * 2)
    query = t64([[[2, 2], [0, 6]]] * 2)
    assignment = t64([[[1, 0], [0.5, 0.5]], [[0, 0], [0, 0]]])
    protos = refine_prototypes(support, query, assignment, 2, 2)
    # episode 0: class 0 = ([4, 0] + [2, 2] + 0.5 [0, 6]) / (2 + 1.5),
    # class 1 = ([0, 6] + 0.5 [0, 6]) / (2 + 0.5)
    assert protos.shape == (2, 2, 2)
    torch.testing.assert_close(protos[0], t64([[6 / 3.5, 5 / 3.5], [0, 3.6]]))
    # episode 1: no query assigned -> the support means
    torch.testing.assert_close(protos[1], t64([[2, 0], [0, 3]]))
    # query_weight 0.5: class 0 = ([4, 0] + 0.5 [2, 5]) / (2 + 0.75),
    # class 1 = ([0, 6] + 0.5 [0, 3]) / (2 + 0.25)
    half = refine_prototypes(support, query, assignment, 2, 2, 0.5)
    torch.testing.assert_close(half[0],
                               t64([[5 / 2.75, 2.5 / 2.75], [0, 7.5 / 2.25]]))
    # query_weight 0 ignores the queries
    torch.testing.assert_close(
        refine_prototypes(support, query, assignment, 2, 2, 0.0)[0],
        t64([[2, 0], [0, 3]]))


def test_refine_prototypes_rejects_bad_shapes():
    support, query = torch.zeros(1, 4, 3), torch.zeros(1, 5, 3)
    with pytest.raises(ValueError, match='supports'):
        refine_prototypes(support, query, torch.zeros(1, 5, 2), 3, 1)
    with pytest.raises(ValueError, match='assignment'):
        refine_prototypes(support, query, torch.zeros(1, 4, 2), 2, 2)
    with pytest.raises(ValueError, match='query_weight'):
        refine_prototypes(support, query, torch.zeros(1, 5, 2), 2, 2, -1.0)


# -- plain posteriors (steps = 0 / no query weight) -------------------------
def test_steps0_gives_plain_prototype_posteriors_by_hand():
    # 2-way 1-shot; rgb: supports [1, 0], [0, 1], query [3, 4] ->
    # cos 0.6, 0.8 -> d 0.4, 0.2 -> logits -4, -2 at tau 0.1
    # flow: supports [2, 0], [1, 1], query [1, 0] -> cos 1, 1/sqrt2,
    # tau 0.5 -> logits 0, -(1 - 1/sqrt2) / 0.5
    support = dict(rgb=t64([[[1, 0], [0, 1]]]), flow=t64([[[2, 0], [1, 1]]]))
    query = dict(rgb=t64([[[3, 4]]]), flow=t64([[[1, 0]]]))
    tau = dict(rgb=0.1, flow=torch.tensor(0.5, dtype=torch.float64))
    out = CrossModalSoftKMeans(steps=0)(support, query, tau, 2, 1)
    e2 = math.exp(2)
    rgb = [1 / (1 + e2), e2 / (1 + e2)]
    flow_logit = -(1 - 1 / math.sqrt(2)) / 0.5
    flow = [
        1 / (1 + math.exp(flow_logit)),
        math.exp(flow_logit) / (1 + math.exp(flow_logit))
    ]
    torch.testing.assert_close(out['log_probs']['rgb'][0, 0], t64(rgb).log())
    torch.testing.assert_close(out['log_probs']['flow'][0, 0], t64(flow).log())
    # reliability: rgb's top is class 1, flow's class 0;
    # agree_rgb = p_rgb(0), agree_flow = p_flow(1); softmax / 0.1
    agree = t64([rgb[0], flow[1]]) / 0.1
    torch.testing.assert_close(out['reliability'][0], agree.softmax(0))


@pytest.mark.parametrize('metric', ['cosine', 'euclidean'])
def test_steps0_matches_prototype_head(metric):
    """Against :class:`PrototypeHead` (an independent implementation): for
    cosine with unit-norm embeddings (any K), for euclidean always."""
    gen = torch.Generator().manual_seed(0)
    support = torch.randn(3, 5 * 3, 16, generator=gen, dtype=torch.float64)
    query = torch.randn(3, 10, 16, generator=gen, dtype=torch.float64)
    if metric == 'cosine':
        support = support / support.norm(dim=-1, keepdim=True)
        query = query / query.norm(dim=-1, keepdim=True)
    head = PrototypeHead(metric=metric, temperature=0.2).double()
    expected = torch.log_softmax(
        -head.embedding_distances(support, query, 5, 3) / 0.2, dim=-1)
    out = CrossModalSoftKMeans(
        steps=0, source='self', metric=metric)(dict(rgb=support),
                                               dict(rgb=query), dict(rgb=0.2),
                                               5, 3)
    torch.testing.assert_close(out['log_probs']['rgb'], expected)


def test_zero_query_weight_equals_steps0():
    gen = torch.Generator().manual_seed(1)
    support = dict(
        rgb=torch.randn(2, 6, 8, generator=gen),
        flow=torch.randn(2, 6, 4, generator=gen))
    query = dict(
        rgb=torch.randn(2, 9, 8, generator=gen),
        flow=torch.randn(2, 9, 4, generator=gen))
    tau = dict(rgb=0.1, flow=0.3)
    plain = CrossModalSoftKMeans(steps=0)(support, query, tau, 3, 2)
    frozen = CrossModalSoftKMeans(
        steps=4, query_weight=0.0)(support, query, tau, 3, 2)
    refined = CrossModalSoftKMeans(steps=4)(support, query, tau, 3, 2)
    for m in ('rgb', 'flow'):
        torch.testing.assert_close(frozen['log_probs'][m],
                                   plain['log_probs'][m])
        # (and a query weight does change them: the check can fail)
        assert not torch.allclose(refined['log_probs'][m],
                                  plain['log_probs'][m])


# -- the constructed cross-modal episode ---------------------------------
def shifted_episode(num_ways=3, num_queries=5, shift=1.5, noise=0.05):
    """Modality ``a``: the queries of class ``c`` lie towards class
    ``c + 1``'s support (``normalize(e_c + shift e_{c+1})``), so the plain
    prototypes label every query ``c + 1``; modality ``b``: the queries
    sit at their class's support, clearly separable."""
    gen = torch.Generator().manual_seed(2)
    eye = torch.eye(num_ways, dtype=torch.float64)
    labels = torch.arange(num_ways).repeat_interleave(num_queries)
    centres_a = eye + shift * eye.roll(1, dims=1)  # row c: e_c + s e_{c+1}
    centres_a = centres_a / centres_a.norm(dim=-1, keepdim=True)
    query_a = centres_a[labels] + noise * torch.randn(
        len(labels), num_ways, generator=gen, dtype=torch.float64)
    query_b = eye[labels] + noise * torch.randn(
        len(labels), num_ways, generator=gen, dtype=torch.float64)
    support = dict(a=eye[None], b=eye[None].clone())
    query = dict(a=query_a[None], b=query_b[None])
    return support, query, labels, centres_a


def accuracy(log_probs, labels):
    return (log_probs[0].argmax(-1) == labels).double().mean().item()


def test_other_modality_assignment_corrects_a_shifted_modality():
    support, query, labels, centres_a = shifted_episode()
    tau = dict(a=0.1, b=0.1)
    plain = CrossModalSoftKMeans(steps=0)(support, query, tau, 3, 1)
    assert accuracy(plain['log_probs']['a'], labels) == 0.0
    assert accuracy(plain['log_probs']['b'], labels) == 1.0
    for steps in (1, 2, 3, 4):
        other = CrossModalSoftKMeans(
            steps=steps, source='other')(support, query, tau, 3, 1)
        # b's confident assignment pulls a's prototypes onto a's query
        # clusters; b, the more confident, learns nothing wrong from a
        assert accuracy(other['log_probs']['a'], labels) == 1.0
        assert accuracy(other['log_probs']['b'], labels) == 1.0
        # a assigned by itself reinforces its own mistake
        alone = CrossModalSoftKMeans(
            steps=steps, source='self')(support, query, tau, 3, 1)
        assert accuracy(alone['log_probs']['a'], labels) == 0.0

    def gap_to_query_centres(prototypes):
        unit = prototypes[0] / prototypes[0].norm(dim=-1, keepdim=True)
        return (unit - centres_a).norm(dim=-1)

    initial = gap_to_query_centres(support['a'])
    moved = gap_to_query_centres(other['prototypes']['a'])
    assert (moved < 0.5 * initial).all()
    # b keeps its support prototypes: a never was the more confident
    torch.testing.assert_close(other['prototypes']['b'], support['b'])
    # after refinement the modalities agree on every query; b, sharper,
    # puts more mass on a's top class than a on b's: b is more reliable
    assert (other['log_probs']['a'].argmax(-1) == other['log_probs']
            ['b'].argmax(-1)).all()
    assert other['reliability'][0, 1] > other['reliability'][0, 0]


@pytest.mark.parametrize('confidence', ['max', None, 0.9])
def test_confident_disagreement_swaps_without_relative_confidence(confidence):
    """Why ``'relative'`` is the default: otherwise each modality adopts
    the other's labels at every step, so the two swap (a right after odd
    steps, b right after even ones)."""
    support, query, labels, _ = shifted_episode()
    tau = dict(a=0.1, b=0.1)
    for steps in (1, 2, 3):
        out = CrossModalSoftKMeans(
            steps=steps, confidence=confidence)(support, query, tau, 3, 1)
        a_right = steps % 2 == 1
        assert accuracy(out['log_probs']['a'], labels) == float(a_right)
        assert accuracy(out['log_probs']['b'], labels) == float(not a_right)


# -- reliability ------------------------------------------------------------
def test_cross_modal_reliability_by_hand():
    # rgb tops: 0, 0; flow tops: 1, 0
    probs = t64([[[[0.9, 0.1], [0.6, 0.4]], [[0.2, 0.8], [0.7, 0.3]]]])
    # agree_rgb = mean(p_rgb(1), p_rgb(0)) = mean(0.1, 0.6) = 0.35
    # agree_flow = mean(p_flow(0), p_flow(0)) = mean(0.2, 0.7) = 0.45
    expected = t64([1, math.e]) / (1 + math.e)  # softmax(3.5, 4.5)
    torch.testing.assert_close(
        cross_modal_reliability(probs, 0.1)[0], expected)
    assert cross_modal_reliability(probs[:, :1]).tolist() == [[1.0]]
    with pytest.raises(ValueError, match='temperature'):
        cross_modal_reliability(probs, 0.0)


# -- shapes, single modality, registry ------------------------------------
def random_episodes(channels,
                    num_episodes=4,
                    num_ways=5,
                    num_shots=2,
                    num_queries=15,
                    seed=3):
    gen = torch.Generator().manual_seed(seed)
    support = {
        m:
        torch.randn(
            num_episodes,
            num_ways * num_shots,
            c,
            generator=gen,
            dtype=torch.float64)
        for m, c in channels.items()
    }
    query = {
        m:
        torch.randn(
            num_episodes, num_queries, c, generator=gen, dtype=torch.float64)
        for m, c in channels.items()
    }
    return support, query


@pytest.mark.parametrize('source', ['other', 'self'])
def test_shapes_and_normalisation(source):
    support, query = random_episodes(dict(rgb=12, flow=7))
    out = MODELS.build(
        dict(type='CrossModalSoftKMeans', steps=2,
             source=source))(support, query, dict(rgb=0.1, flow=0.2), 5, 2)
    assert list(out['log_probs']) == ['rgb', 'flow']
    for m, c in (('rgb', 12), ('flow', 7)):
        assert out['log_probs'][m].shape == (4, 15, 5)
        assert out['prototypes'][m].shape == (4, 5, c)
        torch.testing.assert_close(out['log_probs'][m].logsumexp(-1),
                                   torch.zeros(4, 15, dtype=torch.float64))
    assert out['reliability'].shape == (4, 2)
    assert (out['reliability'] > 0).all()
    torch.testing.assert_close(out['reliability'].sum(-1),
                               torch.ones(4, dtype=torch.float64))


def test_single_modality_self():
    support, query = random_episodes(dict(rgb=6), num_episodes=3)
    module = CrossModalSoftKMeans(steps=3, source='self', confidence=0.5)
    out = module(support, query, dict(rgb=0.1), 5, 2)
    assert out['reliability'].tolist() == [[1.0]] * 3
    expected = [
        reference_episode(
            dict(rgb=support['rgb'][e].numpy()),
            dict(rgb=query['rgb'][e].numpy()), dict(rgb=0.1), 5, 2, 3, 'self',
            0.5, 1.0, 'cosine', 0.1)[0]['rgb'] for e in range(3)
    ]
    torch.testing.assert_close(out['log_probs']['rgb'],
                               torch.from_numpy(np.stack(expected)))
    # 'relative' compares a modality with itself: the same as 'max'
    relative = CrossModalSoftKMeans(
        steps=3, source='self', confidence='relative')(support, query,
                                                       dict(rgb=0.1), 5, 2)
    by_max = CrossModalSoftKMeans(
        steps=3, source='self', confidence='max')(support, query,
                                                  dict(rgb=0.1), 5, 2)
    torch.testing.assert_close(relative['log_probs']['rgb'],
                               by_max['log_probs']['rgb'])
    with pytest.raises(ValueError, match='two modalities'):
        CrossModalSoftKMeans(source='other')(support, query, dict(rgb=0.1), 5,
                                             2)


@pytest.mark.parametrize('kwargs', [
    dict(steps=-1),
    dict(source='both'),
    dict(confidence='mean'),
    dict(confidence=1.5),
    dict(metric='l1'),
    dict(query_weight=-0.5),
    dict(reliability_temperature=0.0)
])
def test_rejects_bad_arguments(kwargs):
    with pytest.raises(ValueError):
        CrossModalSoftKMeans(**kwargs)


def test_tensor_and_float_temperatures_agree():
    support, query = random_episodes(dict(rgb=6, flow=5))
    floats = CrossModalSoftKMeans()(support, query, dict(rgb=0.1, flow=0.2), 5,
                                    2)
    tensors = CrossModalSoftKMeans()(support, query,
                                     dict(
                                         rgb=torch.tensor(0.1),
                                         flow=torch.tensor(0.2)), 5, 2)
    for m in ('rgb', 'flow'):
        torch.testing.assert_close(floats['log_probs'][m],
                                   tensors['log_probs'][m])


# -- batched module == slow per-episode loop ------------------------------
@pytest.mark.parametrize('source', ['other', 'self'])
@pytest.mark.parametrize('confidence', [None, 'max', 'relative', 0.4])
@pytest.mark.parametrize('metric', ['cosine', 'euclidean'])
def test_batched_equals_per_episode_loop(source, confidence, metric):
    channels = dict(rgb=8, flow=5)
    support, query = random_episodes(
        channels, num_episodes=3, num_ways=3, num_shots=2, num_queries=6)
    if metric == 'euclidean':  # keep the posteriors away from one-hot
        support = {m: 0.3 * v for m, v in support.items()}
        query = {m: 0.3 * v for m, v in query.items()}
    tau = dict(rgb=0.3, flow=0.5)
    module = CrossModalSoftKMeans(
        steps=3,
        source=source,
        confidence=confidence,
        query_weight=0.7,
        metric=metric,
        reliability_temperature=0.2)
    out = module(support, query, tau, 3, 2)
    for e in range(3):
        log_probs, reliability = reference_episode(
            {
                m: v[e].numpy()
                for m, v in support.items()
            }, {
                m: v[e].numpy()
                for m, v in query.items()
            }, tau, 3, 2, 3, source, confidence, 0.7, metric, 0.2)
        for m in channels:
            torch.testing.assert_close(out['log_probs'][m][e],
                                       torch.from_numpy(log_probs[m]))
        torch.testing.assert_close(out['reliability'][e],
                                   torch.from_numpy(reliability))


def test_three_modalities_other_equals_per_episode_loop():
    channels = dict(rgb=6, flow=4, depth=3)
    support, query = random_episodes(
        channels, num_episodes=2, num_ways=3, num_shots=1, num_queries=6)
    tau = dict(rgb=0.2, flow=0.3, depth=0.25)
    out = CrossModalSoftKMeans(steps=2)(support, query, tau, 3, 1)
    assert out['reliability'].shape == (2, 3)
    for e in range(2):
        log_probs, reliability = reference_episode(
            {
                m: v[e].numpy()
                for m, v in support.items()
            }, {
                m: v[e].numpy()
                for m, v in query.items()
            }, tau, 3, 1, 2, 'other', 'relative', 1.0, 'cosine', 0.1)
        for m in channels:
            torch.testing.assert_close(out['log_probs'][m][e],
                                       torch.from_numpy(log_probs[m]))
        torch.testing.assert_close(out['reliability'][e],
                                   torch.from_numpy(reliability))
