"""Few-shot accuracy over episodes: mean and 95% CI, plus, for two-modality
predictions, per-modality, average-fusion, oracle and ASI statistics."""
import json
import os
import os.path as osp
from itertools import groupby
from typing import List, Optional, Sequence

import numpy as np
import torch
from mmaction.registry import METRICS
from mmengine.evaluator import BaseMetric

MODALITIES = ('rgb', 'flow')


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
    queries whose arg-max is right.  Reports ``accuracy`` (mean %), ``ci95``
    (half-width %) and ``num_episodes``.

    When the predictions also carry ``rgb_score`` and ``flow_score`` (each
    modality's posterior) it reports, each as mean % over episodes with its
    CI: ``rgb_accuracy``, ``flow_accuracy``, ``average_fusion_accuracy``
    (arg-max of the mean posterior) and ``oracle_accuracy`` (a query counts
    if either modality is right); with ``reliability`` (ASI's ``pi``,
    ``(N * Q, 2)``): ``asi_choice_rgb`` / ``asi_choice_flow`` (% of queries
    whose ``argmax pi`` is that modality) and, on the *disagreement*
    queries (exactly one modality right), :func:`selection_skill`:
    ``asi_disagreement`` (% of queries), ``asi_base_rate_flow`` /
    ``asi_base_rate_rgb`` (% of them on which that modality is the right
    one), ``asi_oracle_agreement`` (% on which ASI picks the right one:
    compare it with the larger base rate, which a constant choice reaches),
    ``asi_balanced_accuracy`` (%, mean of the per-modality hit rates: 50
    for any constant choice) and ``asi_auroc_flow`` (AUROC of ``pi_flow``
    for "flow is the right one", %: 50 = no ranking skill).

    Args:
        out_dir (str, optional): also write ``episode_accuracy.json``
            (each episode's index and accuracy; not the ``--episodes``
            list of ``tools/test.py``), ``reliability_hist.png`` and
            ``per_class_accuracy.png`` (x axis: the dataset's class names)
            there.
    """
    default_prefix = 'fewshot'

    def __init__(self, out_dir: Optional[str] = None, **kwargs) -> None:
        super().__init__(**kwargs)
        self.out_dir = out_dir

    def process(self, data_batch, data_samples: Sequence[dict]) -> None:
        """One record per episode (``correct`` etc. as numpy arrays over
        its queries), computed at once for each run of episodes of the same
        layout (shapes and fields; one run for an :class:`EpisodicDataset`).
        """
        for _, run in groupby(data_samples, key=_layout):
            self.results.extend(_records(list(run)))

    def compute_metrics(self, results: List[dict]) -> dict:
        metrics = {}

        def add(name, key):
            mean, ci = mean_ci95(_episode_means(results, key))
            metrics[name], metrics[f'{name}_ci95'] = 100 * mean, 100 * ci

        add('accuracy', 'correct')
        metrics['ci95'] = metrics.pop('accuracy_ci95')
        metrics['num_episodes'] = len(results)
        if 'rgb_correct' in results[0]:
            add('rgb_accuracy', 'rgb_correct')
            add('flow_accuracy', 'flow_correct')
            add('average_fusion_accuracy', 'average_correct')
            for r in results:
                r['oracle_correct'] = np.logical_or(r['rgb_correct'],
                                                    r['flow_correct'])
            add('oracle_accuracy', 'oracle_correct')
        if 'reliability' in results[0]:
            metrics.update(_asi_statistics(results))
        if self.out_dir:
            classes = (self.dataset_meta or {}).get('classes')
            _write_outputs(self.out_dir, results, classes)
        return metrics


def _layout(sample: dict) -> tuple:
    """What decides a record's fields and shapes."""
    return (tuple(sample['pred_score'].shape), sample.get('class_labels')
            is not None, all(f'{m}_score' in sample
                             for m in MODALITIES), 'reliability' in sample)


def _stack(samples: List[dict], key: str) -> torch.Tensor:
    return torch.stack([s[key] for s in samples]).cpu()


def _correct(scores: torch.Tensor, gt: torch.Tensor) -> np.ndarray:
    """``(E, M)`` whether each query's arg-max is its label."""
    return (scores.argmax(-1) == gt).numpy()


def _records(samples: List[dict]) -> List[dict]:
    """The records of ``E`` episodes of one :func:`_layout`."""
    gt = _stack(samples, 'gt_label')  # (E, M)
    columns = dict(correct=_correct(_stack(samples, 'pred_score'), gt))
    first = samples[0]
    if first.get('class_labels') is not None:
        classes = torch.as_tensor([s['class_labels'] for s in samples])
        columns['query_class'] = classes.gather(1, gt).numpy()
    if all(f'{m}_score' in first for m in MODALITIES):
        scores = {m: _stack(samples, f'{m}_score') for m in MODALITIES}
        for m in MODALITIES:
            columns[f'{m}_correct'] = _correct(scores[m], gt)
        columns['average_correct'] = _correct(scores['rgb'] + scores['flow'],
                                              gt)
        if 'reliability' in first:
            columns['reliability'] = _stack(samples,
                                            'reliability').double().numpy()
    return [
        dict(
            episode_index=sample.get('episode_index'),
            **{
                k: v[e]
                for k, v in columns.items()
            }) for e, sample in enumerate(samples)
    ]


def _episode_means(results: List[dict], key: str) -> np.ndarray:
    """``np.mean(r[key])`` of every record, in one pass."""
    values = [r[key] for r in results]
    lengths = np.array([len(v) for v in values])
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    sums = np.add.reduceat(np.concatenate(values).astype(np.float64), starts)
    return sums / lengths


def auroc(scores: np.ndarray, positive: np.ndarray) -> float:
    """Area under the ROC curve of ``scores`` for the 0/1 ``positive``
    labels: ``P(s_pos > s_neg) + P(s_pos = s_neg) / 2`` over all
    positive-negative pairs (Mann-Whitney U / (n_pos n_neg)); NaN when
    either class is empty."""
    scores = np.asarray(scores, dtype=np.float64)
    positive = np.asarray(positive, dtype=bool)
    pos, neg = scores[positive], np.sort(scores[~positive])
    if pos.size == 0 or neg.size == 0:
        return float('nan')
    below = np.searchsorted(neg, pos, side='left')
    tied = np.searchsorted(neg, pos, side='right') - below
    return float((below + 0.5 * tied).sum() / (pos.size * neg.size))


def selection_skill(pi_flow: np.ndarray, rgb_correct: np.ndarray,
                    flow_correct: np.ndarray) -> dict:
    """How well ``pi`` picks the right modality where it matters.

    On the disagreement queries (exactly one modality right) a selector
    that always picks flow is right on the *base rate*
    ``P(flow right | exactly one right)`` of them; the statistics below
    separate skill from that rate.

    Args:
        pi_flow: ``(Q,)`` ``pi_flow`` of ``Q`` queries (``pi_rgb = 1 -
            pi_flow``); ASI picks flow where ``pi_flow > 1/2``.
        rgb_correct, flow_correct: ``(Q,)`` 0/1 whether each modality's
            arg-max is right.

    Returns:
        dict (all in %): ``disagreement`` (share of queries),
        ``base_rate_flow`` / ``base_rate_rgb``, ``oracle_agreement`` (picks
        the right one), ``balanced_accuracy`` (mean of the hit rates on
        flow-right and rgb-right queries; 50 for a constant choice) and
        ``auroc_flow`` (AUROC of ``pi_flow`` for "flow is right"; 50 = no
        skill); only ``disagreement`` when there is no such query.  A
        statistic undefined on these queries (one modality never the right
        one) is NaN.
    """
    pi_flow = np.asarray(pi_flow, dtype=np.float64)
    rgb_ok = np.asarray(rgb_correct, dtype=bool)
    flow_ok = np.asarray(flow_correct, dtype=bool)
    one_right = rgb_ok != flow_ok
    stats = dict(disagreement=100 * float(one_right.mean()))
    if not one_right.any():
        return stats
    flow_right = flow_ok[one_right]
    picks_flow = pi_flow[one_right] > 0.5
    hit = picks_flow == flow_right
    with np.errstate(invalid='ignore'):
        recalls = [
            hit[flow_right].mean() if flow_right.any() else np.nan,
            hit[~flow_right].mean() if (~flow_right).any() else np.nan
        ]
    stats.update(
        base_rate_flow=100 * float(flow_right.mean()),
        base_rate_rgb=100 * float(1 - flow_right.mean()),
        oracle_agreement=100 * float(hit.mean()),
        balanced_accuracy=100 * float(np.mean(recalls)),
        auroc_flow=100 * auroc(pi_flow[one_right], flow_right))
    return stats


def _asi_statistics(results: List[dict]) -> dict:
    pi = np.concatenate([r['reliability'] for r in results])
    rgb_ok = np.concatenate([r['rgb_correct'] for r in results])
    flow_ok = np.concatenate([r['flow_correct'] for r in results])
    picks_flow = pi.argmax(1) == 1
    stats = dict(
        asi_choice_rgb=100 * float(np.mean(~picks_flow)),
        asi_choice_flow=100 * float(np.mean(picks_flow)))
    skill = selection_skill(pi[:, 1], rgb_ok, flow_ok)
    stats.update({f'asi_{k}': v for k, v in skill.items()})
    return stats


#: Each test episode's accuracy (not to be confused with an episode list).
EPISODE_ACCURACY_FILE = 'episode_accuracy.json'


def per_class_figure(results: List[dict],
                     class_names: Optional[Sequence[str]] = None):
    """Bar chart of the query accuracy (%) of each test class over all
    episodes; the x axis names the classes (``class_names[label]``, the
    dataset's ``classes``), else shows the labels.

    Returns:
        matplotlib.figure.Figure: the figure (the caller saves / closes it).
    """
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    classes = np.concatenate([r['query_class'] for r in results])
    correct = np.concatenate([r['correct'] for r in results])
    labels = np.unique(classes)
    acc = [100 * correct[classes == c].mean() for c in labels]
    names = [
        str(class_names[c])
        if class_names is not None and 0 <= c < len(class_names) else str(c)
        for c in labels
    ]
    width = max(6, 0.3 * len(labels) + 0.06 * max(map(len, names)))
    fig, ax = plt.subplots(figsize=(width, 4.5))
    ax.bar(range(len(labels)), acc)
    ax.set_xticks(
        range(len(labels)),
        names,
        rotation=45,
        ha='right',
        fontsize=8 if len(labels) > 20 else 10)
    ax.set_xlabel(
        'test class' if class_names is not None else 'test class label')
    ax.set_ylabel('query accuracy (%)')
    ax.set_title('Per-class accuracy over all test episodes')
    fig.tight_layout()
    return fig


def _write_outputs(out_dir: str,
                   results: List[dict],
                   class_names: Optional[Sequence[str]] = None) -> None:
    """Per-episode JSON and the two plots people look at."""
    os.makedirs(out_dir, exist_ok=True)
    with open(osp.join(out_dir, EPISODE_ACCURACY_FILE), 'w') as f:
        json.dump([
            dict(
                episode_index=r['episode_index'],
                accuracy=float(np.mean(r['correct']))) for r in results
        ], f)
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    if 'reliability' in results[0]:
        pi_flow = np.concatenate(
            [np.asarray(r['reliability'])[:, 1] for r in results])
        fig, axes = plt.subplots(1, 2, figsize=(10, 3.6), sharey=True)
        for ax, m in zip(axes, MODALITIES):
            ok = np.concatenate([r[f'{m}_correct'] for r in results])
            pi_m = pi_flow if m == 'flow' else 1 - pi_flow
            bins = np.linspace(0, 1, 21)
            ax.hist(pi_m[ok], bins, alpha=0.6, label=f'{m} right')
            ax.hist(pi_m[~ok], bins, alpha=0.6, label=f'{m} wrong')
            ax.set_xlabel(f'ASI reliability of {m}, pi_{m}(q)')
            ax.legend()
        axes[0].set_ylabel('queries')
        fig.suptitle('Reliability per query, split by whether the modality '
                     'was right')
        fig.tight_layout()
        fig.savefig(osp.join(out_dir, 'reliability_hist.png'), dpi=100)
        plt.close(fig)

    if 'query_class' in results[0]:
        fig = per_class_figure(results, class_names)
        fig.savefig(osp.join(out_dir, 'per_class_accuracy.png'), dpi=100)
        plt.close(fig)
