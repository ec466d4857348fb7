"""FewShotAccuracy and the prototype head against hand computations."""
import math

import numpy as np
import pytest
import torch

from amfir_mm.evaluation import (FewShotAccuracy, auroc, mean_ci95,
                                 selection_skill)
from amfir_mm.models import PrototypeHead


def test_mean_ci95_by_hand():
    # values 0, 0.5, 1: mean 0.5, population std sqrt(1/6)
    mean, ci = mean_ci95([0.0, 0.5, 1.0])
    assert mean == pytest.approx(0.5)
    assert ci == pytest.approx(1.96 * math.sqrt(1 / 6) / math.sqrt(3))


def test_fewshot_accuracy_metric():
    metric = FewShotAccuracy()
    gt = torch.tensor([0, 1])
    right = torch.tensor([[0.9, 0.1], [0.2, 0.8]])  # 2/2 correct
    half = torch.tensor([[0.9, 0.1], [0.7, 0.3]])  # 1/2 correct
    metric.process({}, [
        dict(pred_score=right, gt_label=gt),
        dict(pred_score=half, gt_label=gt)
    ])
    out = metric.compute_metrics(metric.results)
    assert out['accuracy'] == pytest.approx(75.0)
    assert out['ci95'] == pytest.approx(100 * 1.96 * 0.25 / math.sqrt(2))
    assert out['num_episodes'] == 2


def test_prototype_distances_by_hand():
    # 2-way 2-shot, T=2, C=2.  Class 0 frames average to (1, 0) and (3, 0):
    # prototype (2, 0); class 1 prototype (0, 1).  Query mean (1, 1).
    support = torch.tensor([[[1., 0.], [1., 0.]], [[3., 0.], [3., 0.]],
                            [[0., 1.], [0., 1.]], [[0., 2.], [0., 0.]]])
    query = torch.tensor([[[2., 0.], [0., 2.]]])
    cos = PrototypeHead(metric='cosine', temperature=0.5)
    d = cos.distances(support, query, num_ways=2, num_shots=2)
    assert d.tolist()[0] == pytest.approx([1 - 1 / math.sqrt(2)] * 2)
    euc = PrototypeHead(metric='euclidean', temperature=0.5)
    d = euc.distances(support, query, num_ways=2, num_shots=2)
    # |(1,1)-(2,0)|^2 / C = 2 / 2; |(1,1)-(0,1)|^2 / 2 = 1 / 2
    assert d.tolist()[0] == pytest.approx([1.0, 0.5])
    logits = euc(support, query, 2, 2)
    assert logits.tolist()[0] == pytest.approx([-2.0, -1.0])


def test_bad_metric_name():
    with pytest.raises(ValueError, match='cosine or euclidean'):
        PrototypeHead(metric='manhattan')


def test_two_modality_statistics_by_hand(tmp_path):
    gt = torch.tensor([0, 1, 0, 1])
    # rgb: right, right, wrong, wrong; flow: right, wrong, right, right
    rgb = torch.tensor([[.9, .1], [.2, .8], [.4, .6], [.7, .3]])
    flow = torch.tensor([[.6, .4], [.55, .45], [.9, .1], [.1, .9]])
    # average: [.75,.25] ok, [.375,.625] ok, [.65,.35] ok, [.4,.6] ok
    fused = torch.tensor([[.8, .2], [.3, .7], [.6, .4], [.6, .4]])  # 3/4
    pi = torch.tensor([[.7, .3], [.9, .1], [.2, .8], [.6, .4]])
    metric = FewShotAccuracy(out_dir=str(tmp_path))
    metric.process({}, [
        dict(
            pred_score=fused,
            gt_label=gt,
            rgb_score=rgb,
            flow_score=flow,
            reliability=pi,
            class_labels=[3, 8],
            episode_index=0)
    ])
    out = metric.compute_metrics(metric.results)
    assert out['accuracy'] == pytest.approx(75)
    assert out['rgb_accuracy'] == pytest.approx(50)
    assert out['flow_accuracy'] == pytest.approx(75)
    assert out['average_fusion_accuracy'] == pytest.approx(100)
    assert out['oracle_accuracy'] == pytest.approx(100)
    assert out['asi_choice_rgb'] == pytest.approx(75)
    assert out['asi_choice_flow'] == pytest.approx(25)
    # exactly one modality right on queries 1, 2, 3; ASI picks the right
    # one on 1 (rgb) and 2 (flow), not on 3 (picks rgb, flow was right)
    assert out['asi_oracle_agreement'] == pytest.approx(100 * 2 / 3)
    # of those three, flow is the right one on 2 and 3
    assert out['asi_disagreement'] == pytest.approx(75)
    assert out['asi_base_rate_flow'] == pytest.approx(100 * 2 / 3)
    assert out['asi_base_rate_rgb'] == pytest.approx(100 / 3)
    # hit rates: flow-right queries 1 of 2 (2 yes, 3 no), rgb-right 1 of 1
    assert out['asi_balanced_accuracy'] == pytest.approx(75)
    # pi_flow .8 and .4 (flow right) both above .1 (rgb right)
    assert out['asi_auroc_flow'] == pytest.approx(100)
    for name in ('reliability_hist.png', 'per_class_accuracy.png',
                 'episode_accuracy.json'):
        assert (tmp_path / name).stat().st_size > 0


def test_chunk_of_mixed_episodes_equals_one_by_one():
    gen = torch.Generator().manual_seed(0)

    def episode(index, queries, ways, modalities=True):
        sample = dict(
            pred_score=torch.rand(queries, ways, generator=gen),
            gt_label=torch.randint(0, ways, (queries, ), generator=gen),
            class_labels=list(range(10, 10 + ways)),
            episode_index=index)
        if modalities:
            sample.update(
                rgb_score=torch.rand(queries, ways, generator=gen),
                flow_score=torch.rand(queries, ways, generator=gen),
                reliability=torch.rand(queries, 2, generator=gen))
        return sample

    # runs of layouts: 4 x (4 queries, 2 ways), one (6, 3), one (4, 2)
    samples = [episode(i, 4, 2) for i in range(4)] + \
        [episode(4, 6, 3), episode(5, 4, 2)]
    chunked, single = FewShotAccuracy(), FewShotAccuracy()
    chunked.process({}, samples)
    for sample in samples:
        single.process({}, [sample])
    assert len(chunked.results) == 6
    for a, b, sample in zip(chunked.results, single.results, samples):
        assert a.keys() == b.keys()
        for key in a:
            np.testing.assert_array_equal(a[key], b[key])
        gt = sample['gt_label']
        np.testing.assert_array_equal(a['correct'],
                                      sample['pred_score'].argmax(1) == gt)
        assert list(a['query_class']) == [10 + int(g) for g in gt]
    assert chunked.compute_metrics(chunked.results) == \
        single.compute_metrics(single.results)
    # a chunk without per-modality scores: no modality records
    metric = FewShotAccuracy()
    metric.process({}, [episode(0, 4, 2, modalities=False)] * 2)
    assert set(
        metric.results[0]) == {'episode_index', 'correct', 'query_class'}


def test_auroc_equals_pairwise_count_with_ties():
    rng = np.random.default_rng(0)
    scores = rng.integers(0, 5, 200) / 4  # many ties
    positive = rng.random(200) < 0.4
    pos, neg = scores[positive], scores[~positive]
    pairs = (pos[:, None]
             > neg[None]).sum() + 0.5 * (pos[:, None] == neg[None]).sum()
    assert auroc(scores, positive) == pytest.approx(
        pairs / (pos.size * neg.size), rel=1e-12)
    assert auroc([0.1, 0.9], [False, True]) == 1.0
    assert auroc([0.1, 0.9], [True, False]) == 0.0
    assert np.isnan(auroc([0.3, 0.4], [True, True]))


def test_constant_selector_has_base_rate_agreement_and_no_skill():
    """Always picking flow agrees with the oracle at the base rate; its
    balanced accuracy and AUROC say 50: no skill."""
    rng = np.random.default_rng(1)
    rgb_ok = rng.random(1000) < 0.3
    flow_ok = rng.random(1000) < 0.4
    stats = selection_skill(np.full(1000, 0.59), rgb_ok, flow_ok)
    one = rgb_ok != flow_ok
    base = 100 * flow_ok[one].mean()
    assert stats['disagreement'] == pytest.approx(100 * one.mean())
    assert stats['base_rate_flow'] == pytest.approx(base)
    assert stats['oracle_agreement'] == pytest.approx(base)
    assert stats['balanced_accuracy'] == pytest.approx(50)
    assert stats['auroc_flow'] == pytest.approx(50)
    # a perfect ranker that is also on the right side of 1/2
    perfect = np.where(flow_ok & ~rgb_ok, 0.9, 0.1)
    stats = selection_skill(perfect, rgb_ok, flow_ok)
    assert stats['balanced_accuracy'] == stats['auroc_flow'] == 100
    assert selection_skill(np.zeros(2), [1, 0],
                           [1, 0]) == dict(disagreement=0.0)
