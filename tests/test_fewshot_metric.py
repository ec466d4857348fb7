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


def test_two_modality_statistics_by_hand(tmp_path):
    gt = torch.tensor([0, 1, 0, 1])
    # rgb: right, right, wrong, wrong; flow: right, wrong, right, right
    rgb = torch.tensor([[.9, .1], [.2, .8], [.4, .6], [.7, .3]])
    flow = torch.tensor([[.6, .4], [.55, .45], [.9, .1], [.1, .9]])
    # average: [.75,.25] ok, [.375,.625] ok, [.65,.35] ok, [.4,.6] ok
    fused = torch.tensor([[.8, .2], [.3, .7], [.6, .4], [.6, .4]])  # 3/4
    pi = torch.tensor([[.7, .3], [.9, .1], [.2, .8], [.6, .4]])
    metric = FewShotAccuracy(out_dir=str(tmp_path))
    metric.process({}, [dict(pred_score=fused, gt_label=gt, rgb_score=rgb,
                             flow_score=flow, reliability=pi,
                             class_labels=[3, 8], episode_index=0)])
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
    for name in ('reliability_hist.png', 'per_class_accuracy.png',
                 'fewshot_episodes.json'):
        assert (tmp_path / name).stat().st_size > 0
