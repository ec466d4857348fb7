"""FewShotAccuracy and the prototype head against hand computations."""
import math

import pytest
import torch

from amfir_mm.evaluation import FewShotAccuracy, mean_ci95
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
    metric.process({}, [dict(pred_score=right, gt_label=gt),
                        dict(pred_score=half, gt_label=gt)])
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
