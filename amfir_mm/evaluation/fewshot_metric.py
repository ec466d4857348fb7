"""Few-shot accuracy over episodes: mean and 95% confidence interval."""
from typing import List, Sequence

import numpy as np
from mmaction.registry import METRICS
from mmengine.evaluator import BaseMetric


def mean_ci95(values: Sequence[float]) -> tuple:
    """Mean and 95% CI half-width ``1.96 * std / sqrt(n)`` (``ddof=0``).

    This is the interval few-shot papers report (e.g. TRX, OTAM).
    """
    values = np.asarray(values, dtype=np.float64)
    if values.size == 0:
        raise ValueError('no episodes to average')
    return float(values.mean()), float(1.96 * values.std() /
                                       np.sqrt(values.size))


@METRICS.register_module()
class FewShotAccuracy(BaseMetric):
    """Mean episode accuracy (%) and its 95% CI.

    Each prediction is one episode with ``pred_score`` ``(N * Q, N)`` and
    ``gt_label`` ``(N * Q,)``; the episode's accuracy is the fraction of
    queries whose arg-max is right.  Reports ``accuracy`` (mean %),
    ``ci95`` (half-width %) and ``num_episodes``.
    """
    default_prefix = 'fewshot'

    def process(self, data_batch, data_samples: Sequence[dict]) -> None:
        for sample in data_samples:
            pred = sample['pred_score'].argmax(-1).cpu()
            gt = sample['gt_label'].cpu()
            self.results.append(
                dict(episode_index=sample.get('episode_index'),
                     accuracy=float((pred == gt).float().mean())))

    def compute_metrics(self, results: List[dict]) -> dict:
        mean, ci = mean_ci95([r['accuracy'] for r in results])
        return dict(accuracy=100 * mean, ci95=100 * ci,
                    num_episodes=len(results))
