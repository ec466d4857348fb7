"""OTAM and TRX few-shot heads: hand-checked values, shapes, permutations."""
import itertools
import math

import numpy as np
import pytest
import torch
from mmengine.registry import DefaultScope

import amfir_mm  # noqa: F401
from amfir_mm.models.heads import (OTAMHead, PrototypeHead, TRXHead,
                                   otam_cumulative_distance)
from conftest import episode_samples


@pytest.fixture(autouse=True)
def mmaction_scope():
    """Build in MMAction2's scope whatever scope earlier tests left."""
    with DefaultScope.overwrite_default_scope('mmaction'):
        yield


def soft_min(values, gamma):
    return -gamma * math.log(sum(math.exp(-v / gamma) for v in values))


def test_otam_2x2_by_hand():
    a, b, c, d, g = 0.1, 0.9, 0.8, 0.2, 0.1
    # padded grid [[0, a, b, 0], [0, c, d, 0]]; first row: a, a+b, a+b
    # first frame column: from (0, 0), (0, 1) = a above, or (1, 0)
    g11 = c + soft_min([0.0, a, 0.0], g)
    g12 = d + soft_min([a, g11], g)
    expected = soft_min([a + b, g12, a + b], g)  # end pad: 3 moves
    dists = torch.tensor([[a, b], [c, d]], dtype=torch.float64)
    value = otam_cumulative_distance(dists,
                                     torch.tensor(g, dtype=torch.float64))
    assert float(value) == pytest.approx(expected, rel=1e-12)


def test_otam_3x3_by_hand_reference_recursion():
    """The reference recursion (TRX / CLIP-FSAR ``OTAM_cum_dist``), cell by
    cell on a 3 x 3 grid: the first frame column takes the vertical move
    from the row above."""
    D = [[0.2, 0.7, 0.4], [0.5, 0.1, 0.9], [0.3, 0.6, 0.8]]
    g = 0.5
    # padded columns 0 (start) and 4 (end) cost 0; row 0 accumulates
    r0 = [0.0, 0.2, 0.9, 1.3, 1.3]
    r1_1 = 0.5 + soft_min([0.0, r0[1], 0.0], g)  # (0,0), (0,1), (1,0)
    r1_2 = 0.1 + soft_min([r0[1], r1_1], g)  # (0,1), (1,1)
    r1_3 = 0.9 + soft_min([r0[2], r1_2], g)
    r1_4 = soft_min([r0[3], r1_3, r0[4]], g)  # end pad
    r2_1 = 0.3 + soft_min([0.0, r1_1, 0.0], g)
    r2_2 = 0.6 + soft_min([r1_1, r2_1], g)
    r2_3 = 0.8 + soft_min([r1_2, r2_2], g)
    expected = soft_min([r1_3, r2_3, r1_4], g)
    value = otam_cumulative_distance(
        torch.tensor(D, dtype=torch.float64),
        torch.tensor(g, dtype=torch.float64))
    assert float(value) == pytest.approx(expected, rel=1e-12)
    # the first-column vertical move matters here: without it the value
    # differs by far more than rounding
    r1_1_old = 0.5 + soft_min([0.0, 0.0], g)
    assert abs(r1_1 - r1_1_old) > 1e-2


def brute_force_min_path(cost):
    """Cheapest path through the zero-padded grid with OTAM's moves."""
    rows, cols = cost.shape[0], cost.shape[1] + 2
    padded = np.pad(cost, ((0, 0), (1, 1)))
    best = math.inf

    def walk(r, c, total):
        nonlocal best
        if (r, c) == (rows - 1, cols - 1):
            best = min(best, total)
            return
        # vertical moves in the pads and down the first frame column
        moves = [(0, 1), (1, 1)] + ([(1, 0)] if c in (0, 1, cols - 1) else [])
        for dr, dc in moves:
            nr, nc = r + dr, c + dc
            if nr < rows and nc < cols:
                walk(nr, nc, total + padded[nr, nc])

    walk(0, 0, 0.0)
    return best


def test_otam_small_gamma_is_cheapest_alignment():
    rng = np.random.default_rng(0)
    for shape in ((3, 4), (4, 3), (3, 3)):
        cost = rng.uniform(0, 2, shape)
        value = otam_cumulative_distance(
            torch.from_numpy(cost), torch.tensor(1e-4))
        assert float(value) == pytest.approx(
            brute_force_min_path(cost), abs=1e-3)


def episode(num_ways=3,
            num_shots=2,
            num_queries=2,
            frames=4,
            channels=6,
            seed=0):
    gen = torch.Generator().manual_seed(seed)
    support = torch.randn(
        num_ways * num_shots, frames, channels, generator=gen)
    query = torch.randn(
        num_ways * num_queries, frames, channels, generator=gen)
    return support, query


def heads():
    torch.manual_seed(0)
    return [
        OTAMHead(),
        OTAMHead(symmetric=False),
        TRXHead(in_channels=6, out_channels=8).eval(),
        TRXHead(in_channels=6, out_channels=8, cardinalities=(2, )).eval()
    ]


@pytest.mark.parametrize('head', heads(), ids=['otam', 'otam1', 'trx', 'trx2'])
def test_shapes_and_permutations(head):
    ways, shots = 3, 2
    support, query = episode(ways, shots)
    dist = head.distances(support, query, ways, shots)
    assert dist.shape == (query.shape[0], ways)
    assert head(support, query, ways, shots).shape == dist.shape
    # permuting the support classes permutes the columns
    perm = torch.tensor([2, 0, 1])
    by_class = support.reshape(ways, shots, *support.shape[1:])
    permuted = by_class[perm].flatten(0, 1)
    torch.testing.assert_close(
        head.distances(permuted, query, ways, shots), dist[:, perm])
    # permuting the queries permutes the rows
    qperm = torch.randperm(query.shape[0])
    torch.testing.assert_close(
        head.distances(support, query[qperm], ways, shots), dist[qperm])
    # the order of a class's shots does not matter
    swapped = by_class[:, [1, 0]].flatten(0, 1)
    torch.testing.assert_close(
        head.distances(swapped, query, ways, shots), dist)


def test_otam_kshot_is_mean_over_shots():
    head = OTAMHead()
    support, query = episode(num_ways=3, num_shots=2)
    by_class = support.reshape(3, 2, *support.shape[1:])
    single = [head.distances(by_class[:, k], query, 3, 1) for k in range(2)]
    torch.testing.assert_close(
        head.distances(support, query, 3, 2), (single[0] + single[1]) / 2)


def test_otam_is_order_sensitive_prototype_is_not():
    video = torch.randn(1, 6, 16)
    support = torch.cat([video, video.flip(1)])  # class 0: same, 1: reversed
    otam = OTAMHead(gamma=0.01).distances(support, video, 2, 1)
    assert otam[0, 0] < otam[0, 1]
    proto = PrototypeHead().distances(support, video, 2, 1)
    torch.testing.assert_close(proto[0, 0], proto[0, 1])


def test_otam_learnable_gamma_gets_gradient():
    head = OTAMHead(gamma=0.1, learn_gamma=True)
    support, query = episode()
    head(support, query, 3, 2).sum().backward()
    assert head.log_gamma.grad is not None and head.log_gamma.grad != 0
    assert float(head.gamma) == pytest.approx(0.1)


def test_trx_pairs_of_two_frames_by_hand():
    # T = 2 frames and pairs: one tuple per video, one support tuple per
    # class, so the attention is 1 and the prototype is the support value;
    # the positional encoding cancels in the difference.
    torch.manual_seed(0)
    head = TRXHead(in_channels=3, out_channels=4, cardinalities=(2, )).eval()
    support, query = episode(
        num_ways=2, num_shots=1, num_queries=1, frames=2, channels=3)
    weight = head.value_proj[0].weight.detach().numpy()
    q = query.flatten(1).numpy()
    s = support.flatten(1).numpy()
    expected = np.array([[np.sum((weight @ (qi - sj))**2) for sj in s]
                         for qi in q])
    np.testing.assert_allclose(
        head.distances(support, query, 2, 1).detach().numpy(),
        expected,
        rtol=1e-5)


def trx_reference(head, support, query, ways, shots):
    """TRX's distance written out plainly (TRX's ``model.py`` order)."""
    from amfir_mm.models.heads.trx_head import sinusoidal_encoding
    frames, channels = support.shape[-2:]
    enc = head.pe_scale * sinusoidal_encoding(frames, channels)
    support, query = support + enc, query + enc
    dists = []
    for i, card in enumerate(head.cardinalities):
        index = head.tuples(frames, card)
        s_tup = support[:, index].flatten(-2)  # (N * K, P, c * C)
        q_tup = query[:, index].flatten(-2)
        s_key = head.key_norm[i](head.key_proj[i](s_tup))
        q_key = head.key_norm[i](head.key_proj[i](q_tup))
        s_val, q_val = head.value_proj[i](s_tup), head.value_proj[i](q_tup)
        per_class = []
        for c in range(ways):
            keys = s_key[c * shots:(c + 1) * shots].flatten(0, 1)
            vals = s_val[c * shots:(c + 1) * shots].flatten(0, 1)
            attn = (q_key @ keys.T / head.out_channels**0.5).softmax(-1)
            per_class.append(((q_val - attn @ vals)**2).sum(
                (-1, -2)) / index.shape[0])
        dists.append(torch.stack(per_class, -1))
    return torch.stack(dists).mean(0)


def test_trx_distances_and_gradients_equal_plain_formula():
    torch.manual_seed(0)
    head = TRXHead(in_channels=6, out_channels=8).eval()  # no dropout
    support, query = episode(
        num_ways=3, num_shots=2, num_queries=2, frames=4, channels=6)
    grads = []
    for fn in (head.distances, lambda *a: trx_reference(head, *a)):
        s, q = support.clone().requires_grad_(), query.clone().requires_grad_()
        head.zero_grad()
        dist = fn(s, q, 3, 2)
        dist.sum().backward()
        grads.append((dist.detach(), s.grad, q.grad,
                      head.value_proj[1].weight.grad.clone()))
    for ours, plain in zip(*grads):
        torch.testing.assert_close(ours, plain)


def test_trx_tuples_and_errors():
    assert TRXHead.tuples(4, 2).tolist() == [
        list(c) for c in itertools.combinations(range(4), 2)
    ]
    head = TRXHead(in_channels=6, cardinalities=(2, 3))
    support, query = episode(frames=2)
    with pytest.raises(ValueError, match='cardinality 3'):
        head.distances(support, query, 3, 2)
    with pytest.raises(ValueError, match='in_channels'):
        head.distances(support[..., :4], query[..., :4], 3, 2)
    head = TRXHead(in_channels=6, out_channels=8).train()
    support, query = episode()
    head(support, query, 3, 2).sum().backward()
    assert head.key_proj[1].weight.grad.abs().sum() > 0


@pytest.mark.parametrize('cls_head', [
    dict(type='OTAMHead'),
    dict(type='TRXHead', in_channels=512, out_channels=32)
])
def test_heads_train_alone_in_fewshot_recognizer(cls_head):
    from mmaction.registry import MODELS
    from mmaction.structures import ActionDataSample
    from mmaction.utils import register_all_modules
    register_all_modules()
    torch.manual_seed(0)
    model = MODELS.build(
        dict(
            type='FewShotRecognizer',
            backbone=dict(type='ResNet', depth=18, pretrained=None),
            cls_head=cls_head))
    sample = ActionDataSample().set_gt_label(torch.arange(5))
    sample.set_metainfo(dict(num_ways=5, num_shots=1, num_queries=1))
    inputs = torch.randn(1, 10 * 3, 3, 32, 32)
    losses = model(inputs, [sample], mode='loss')
    losses['loss_cls'].backward()
    assert torch.isfinite(losses['loss_cls'])
    assert model.backbone.conv1.conv.weight.grad.abs().sum() > 0


# -- a batch of episodes: one call equals per-episode calls ---------------
def batched_heads():
    torch.manual_seed(0)
    return [
        PrototypeHead(metric='cosine'),
        PrototypeHead(metric='euclidean'),
        OTAMHead(),
        OTAMHead(symmetric=False),
        TRXHead(in_channels=6, out_channels=8).eval(),
        TRXHead(in_channels=6, out_channels=8, cardinalities=(2, )).eval()
    ]


@pytest.mark.parametrize('shots', [1, 3])
@pytest.mark.parametrize(
    'head',
    batched_heads(),
    ids=['proto_cos', 'proto_euc', 'otam', 'otam1', 'trx', 'trx2'])
def test_batched_distances_equal_per_episode(head, shots):
    ways, queries, lead = 3, 2, (2, 4)  # 2 x 4 episodes
    episodes = [episode(ways, shots, queries, seed=s) for s in range(8)]
    support = torch.stack([s for s, _ in episodes]).unflatten(0, lead)
    query = torch.stack([q for _, q in episodes]).unflatten(0, lead)
    with torch.no_grad():
        batched = head.distances(support, query, ways, shots)
        single = torch.stack([
            head.distances(s, q, ways, shots) for s, q in episodes
        ]).unflatten(0, lead)
    assert batched.shape == lead + (ways * queries, ways)
    torch.testing.assert_close(batched, single)
    # and the episodes differ, so a mix-up of episodes would show
    assert not torch.allclose(single[0, 0], single[0, 1])


@pytest.mark.parametrize(
    'shapes',
    [
        [(3, 1, 1)] * 4,
        [(3, 1, 1), (2, 2, 1), (3, 1, 1)],  # 6 videos each, other shapes
    ],
    ids=['same_shape', 'mixed_shapes'])
def test_head_predict_and_loss_equal_reference(shapes):
    """Batched logits, posteriors and loss equal a plain loop: split each
    episode by hand, the head's distances, -d / tau, cross-entropy."""
    torch.manual_seed(0)
    tau = 0.5
    head = OTAMHead(temperature=tau)
    frames, channels = 4, 5
    feats = torch.randn(len(shapes), 6 * frames, channels)  # 6 videos
    logits = head.episode_logits(feats, episode_samples(shapes))
    assert isinstance(logits, torch.Tensor) == (len(set(shapes)) == 1)
    batch = head.predict(feats, episode_samples(shapes))
    loss = head.loss(feats, episode_samples(shapes))['loss_cls']
    losses = []
    for b, (ways, shots, queries) in enumerate(shapes):
        videos = feats[b].reshape(6, frames, channels)
        support, query = videos[:ways * shots], videos[ways * shots:]
        assert len(query) == ways * queries
        with torch.no_grad():
            expected = -head.distances(support, query, ways, shots) / tau
        labels = torch.arange(ways).repeat_interleave(queries)
        torch.testing.assert_close(logits[b].detach(), expected)
        torch.testing.assert_close(batch[b].pred_score, expected.softmax(-1))
        assert torch.equal(batch[b].pred_label, expected.argmax(-1))
        losses.append(torch.nn.functional.cross_entropy(expected, labels))
    torch.testing.assert_close(loss.detach(), torch.stack(losses).mean())


CACHED_HEADS = {
    'prototype_cosine': lambda: PrototypeHead(metric='cosine'),
    'prototype_euclidean': lambda: PrototypeHead(metric='euclidean'),
    'otam_pair_table': lambda: OTAMHead(),
    'otam_unit_frames': lambda: OTAMHead(cache_max_mb=0),
    'trx_keys_values': lambda: TRXHead(in_channels=6, out_channels=4),
    'trx_frames':
    lambda: TRXHead(in_channels=6, out_channels=4, cache_max_mb=0),
}


@pytest.mark.parametrize('name', list(CACHED_HEADS))
def test_cached_logits_equal_logits_of_gathered_features(name):
    """The cached meta-test's logits from (cache, video indices) equal the
    logits of the gathered episode features, for same- and mixed-shape
    batches; the indices repeat videos across episodes, as a test set
    does."""
    torch.manual_seed(0)
    head = CACHED_HEADS[name]().eval()
    videos = torch.randn(9, 4, 6)  # 9 videos x 4 frames x 6 channels
    cache = head.cache_videos(videos)
    if name.startswith('otam'):  # the strategy the name says was chosen
        assert ('pair_table' in cache) == (name == 'otam_pair_table')
    if name == 'trx_keys_values':  # encoded a few videos at a time
        for (k, v), (k4, v4) in zip(
                cache['keys_values'],
                head.cache_videos(videos, batch_size=4)['keys_values']):
            torch.testing.assert_close((k, v), (k4, v4))
    if name.startswith('trx'):
        assert list(cache) == [name[len('trx_'):]]
    for shapes in ([(3, 1, 1)] * 4, [(3, 1, 1), (2, 2, 1), (3, 1, 1)]):
        orders = [torch.randperm(9)[:6] for _ in shapes]  # 6 videos each
        samples = episode_samples(shapes)
        index = (torch.stack(orders) if len(set(shapes)) == 1 else orders)
        cached = head.episode_logits(cache, samples, video_index=index)
        for b, order in enumerate(orders):
            feats = videos[order].flatten(0, 1)[None]  # (1, V * T, C)
            expected = head.episode_logits(feats, [samples[b]])[0]
            torch.testing.assert_close(cached[b], expected)
        scores = head.predict(cache, samples, video_index=index)
        torch.testing.assert_close(scores[0].pred_score, cached[0].softmax(-1))


def test_otam_pair_table_is_filled_once_per_used_pair():
    """The table exists exactly when it fits the budget; each call fills
    only the pairs its episodes use, and a pair is computed once."""
    videos = torch.randn(64, 8, 3)  # (64 * 8)^2 float32 = 1 MiB
    assert 'pair_table' not in OTAMHead(cache_max_mb=0.99).cache_videos(videos)
    head = OTAMHead(cache_max_mb=1)
    cache = head.cache_videos(videos)
    assert cache['pair_table'].shape == (64 * 64, 8, 8)
    assert not cache['pair_known'].any()
    support = torch.tensor([[0, 1, 2], [0, 1, 3]])  # 2 episodes, 3-way
    query = torch.tensor([[4, 5, 6], [4, 5, 7]])
    first = head.cached_distances(cache, support, query, 3, 1)
    used = {(int(q) * 64 + int(s))
            for e in range(2)
            for q in query[e]
            for s in support[e]}  # 15 distinct pairs (4-5 x 0-1 repeat)
    assert set(cache['pair_known'].nonzero().flatten().tolist()) == used
    # a known row is read, not recomputed: poison it, see it come back
    cache['pair_table'][4 * 64 + 0] = 0.0
    again = head.cached_distances(cache, support, query, 3, 1)
    assert not torch.allclose(again[0, 0], first[0, 0])
    torch.testing.assert_close(again[0, 1:], first[0, 1:])
