"""benchmarks/ssv2_mini.py: folds, the fold-and-video bootstrap, the
controls' fusion, bad --folds input and the --quick runs."""
import json
import math
import os
from pathlib import Path

import numpy as np
import pytest

from conftest import load_script


@pytest.fixture(scope='module')
def bench():
    return load_script('benchmarks/ssv2_mini.py', 'ssv2_mini_bench')


def test_bootstrap_difference_hand_cases(bench):
    rng = np.random.default_rng(0)
    queries = rng.integers(0, 20, size=(50, 5))
    supports = rng.integers(0, 20, size=(50, 5))
    always = np.ones((50, 5), bool)
    never = np.zeros((50, 5), bool)
    # a always right, b never: +100 points in every replicate
    res = bench.bootstrap_difference(always, never, queries, supports, 20, 200)
    assert res['diff'] == 100 and res['ci95'] == [100, 100]
    assert res['p_le_0'] == 0
    # identical predictions: exactly 0
    res = bench.bootstrap_difference(always, always, queries, supports, 20,
                                     200)
    assert res['diff'] == 0 and res['ci95'] == [0, 0]


def test_bootstrap_is_over_videos(bench):
    """All of a's gain sits on one query video: the interval must be wide
    (that video may be left out), unlike an episode-level interval."""
    queries = np.tile(np.arange(10), (100, 1))[:, :5]  # videos 0..4
    supports = np.tile(np.arange(5, 10), (100, 1))
    a = np.zeros((100, 5), bool)
    a[:, 0] = True  # right only on video 0
    b = np.zeros((100, 5), bool)
    res = bench.bootstrap_difference(a, b, queries, supports, 10, 2000)
    assert res['diff'] == 20
    low, high = res['ci95']
    assert low <= 0 + 1e-9 and high >= 40  # video 0 drawn 0 .. 2+ times


def test_bootstrap_resamples_folds():
    """All of the difference sits in fold 0 of two: redrawing the folds
    gives 0 (fold 1 twice), 1/2 or 1 (fold 0 twice); videos do not matter
    here (every query of a fold has the same value)."""
    rng = np.random.default_rng(0)
    queries = [rng.integers(0, 20, (30, 5)) for _ in range(2)]
    supports = [rng.integers(0, 20, (30, 5)) for _ in range(2)]
    values = [np.ones((1, 30, 5)), np.zeros((1, 30, 5))]
    observed, reps = bench_mod().bootstrap_folds(values, queries, supports, 20,
                                                 4000)
    assert observed[0] == pytest.approx(0.5)
    assert set(np.round(reps[:, 0], 9)) == {0.0, 0.5, 1.0}
    # fold counts (2, 0), (1, 1), (0, 2) with probabilities 1/4, 1/2, 1/4
    share = np.mean(np.isclose(reps[:, 0], 0.5))
    assert share == pytest.approx(0.5, abs=0.03)
    # one fold: no fold resampling, the video bootstrap of
    # bootstrap_difference
    _, single = bench_mod().bootstrap_folds(values[:1], queries[:1],
                                            supports[:1], 20, 100)
    np.testing.assert_allclose(single, 1)


_BENCH = {}


def bench_mod():
    if 'mod' not in _BENCH:
        _BENCH['mod'] = load_script('benchmarks/ssv2_mini.py',
                                    'ssv2_mini_bench')
    return _BENCH['mod']


def test_folds_are_complementary_pairs_and_balanced(bench):
    classes = [f'c{i}' for i in range(10)]
    folds = bench.make_folds(classes, 10, seed=0)
    assert len(folds) == 10
    assert len({tuple(ev) for _, ev in folds}) == 10  # all different
    for train, ev in folds:
        assert len(ev) == 5 and sorted(train + ev) == list(range(10))
    for i in range(0, 10, 2):  # fold 2i + 1 evaluates on 2i's training
        assert folds[i][0] == folds[i + 1][1]
    counts = np.bincount([c for _, ev in folds for c in ev], minlength=10)
    assert np.all(counts == 5)
    assert len(bench.make_folds(classes, math.comb(10, 5))) == 252
    assert bench.make_folds(
        classes, 6, seed=1) == bench.make_folds(
            classes, 6, seed=1)


def test_bad_folds_are_clear_errors(bench, tmp_path):
    for split, names in (('train', 'abcde'), ('val', 'fghij')):
        for name in names:
            (tmp_path / split / name).mkdir(parents=True)
    base = [
        '--train-root',
        str(tmp_path / 'train'), '--eval-root',
        str(tmp_path / 'val'), '--work-dir',
        str(tmp_path / 'w'), '--out',
        str(tmp_path / 'r.json')
    ]
    with pytest.raises(ValueError, match='only 252 different'):
        bench.main(base + ['--folds', '253'])
    (tmp_path / 'val' / 'j').rmdir()
    with pytest.raises(ValueError, match='at least 10 classes.*hold 9'):
        bench.main(base + ['--folds', '2'])
    with pytest.raises(SystemExit):
        bench.parse_args(base + ['--folds', '-1'])
    assert not (tmp_path / 'w').exists()  # nothing was started


def test_fusion_controls_by_hand(bench):
    # 1 episode, 4 queries, 2 classes; AMFIR's branches and pi
    rgb = np.array([[[0.8, 0.2], [0.3, 0.7], [0.6, 0.4], [0.1, 0.9]]])
    flow = np.array([[[0.4, 0.6], [0.9, 0.1], [0.2, 0.8], [0.7, 0.3]]])
    pi = np.array([[[0.25, 0.75], [0.75, 0.25], [0.9, 0.1], [0.4, 0.6]]])

    def loglinear(w_rgb):  # normalised p_rgb^w * p_flow^(1 - w)
        out = rgb**w_rgb * flow**(1 - w_rgb)
        return out / out.sum(-1, keepdims=True)

    fused = loglinear(pi[..., :1])
    preds = dict(
        amfir=dict(
            pred_score=fused,
            rgb_score=rgb,
            flow_score=flow,
            reliability=pi,
            labels=np.array([[0, 1, 0, 1]])),
        rgb=dict(pred_score=rgb),
        flow=dict(pred_score=flow))
    scores = bench.variant_scores(preds, 0.3, 'log_linear')
    np.testing.assert_allclose(scores['late_fusion'], (rgb + flow) / 2)
    np.testing.assert_allclose(scores['loglinear_uniform'], loglinear(0.5))
    np.testing.assert_allclose(scores['loglinear_global'], loglinear(0.3))
    np.testing.assert_allclose(scores['amfir_no_ami'], loglinear(0.5))
    np.testing.assert_allclose(scores['amfir_mean_pi'],
                               loglinear(pi[..., :1].mean()))
    np.testing.assert_allclose(scores['amfir_rgb'], rgb)
    # shuffled: each query fused with some query's pi, every pi used once
    shuffled = scores['amfir_shuffled_pi'][0]
    used = []
    for q in range(4):
        match = [
            j for j in range(4) if np.allclose(shuffled[q],
                                               loglinear(pi[0, j, 0])[0, q])
        ]
        assert match, q
        used.append(match[0])
    assert sorted(used) == [0, 1, 2, 3]
    with pytest.raises(AssertionError, match='does not give'):
        preds['amfir']['pred_score'] = loglinear(0.5)
        bench.variant_scores(preds, 0.3, 'log_linear')


def test_global_weight_follows_the_informative_modality(bench):
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 5, (200, 5))
    onehot = np.eye(5)[labels]
    flow = 0.6 * onehot + 0.4 / 5  # right, and confident
    rgb = rng.dirichlet(np.ones(5), (200, 5))  # noise
    w = bench.fit_global_weight(
        dict(pred_score=rgb, labels=labels),
        dict(pred_score=flow, labels=labels))
    assert w <= 0.1
    w = bench.fit_global_weight(
        dict(pred_score=flow, labels=labels),
        dict(pred_score=rgb, labels=labels))
    assert w >= 0.9


@pytest.mark.slow
def test_quick_runs(bench, shared_data, tmp_path):
    """The single train -> val run, then a 2-fold cross-validation with the
    ablations on the same work dir (flow and embeddings reused)."""
    root = shared_data / 'ssv2_mini'
    base = [
        '--train-root',
        str(root / 'train'), '--eval-root',
        str(root / 'val'), '--shots', '1', '--episodes', '100', '--work-dir',
        str(tmp_path / 'work'), '--quick', '--bootstrap', '200'
    ]
    out = tmp_path / 'result.json'
    bench.main(base + ['--out', str(out)])
    result = json.loads(out.read_text())
    variants = result['variants']
    assert set(variants) >= {
        'rgb', 'flow', 'late_fusion', 'amfir', 'amfir_rgb', 'amfir_flow',
        'oracle', 'loglinear_uniform', 'loglinear_global', 'amfir_no_ami',
        'amfir_mean_pi', 'amfir_shuffled_pi'
    }
    for name, v in variants.items():
        assert 0 <= v['acc'] <= 100, name
        assert v['ci95'][0] <= v['acc'] <= v['ci95'][1], name
    # the oracle is right whenever an AMFIR branch is
    assert variants['oracle']['acc'] >= max(variants['amfir_rgb']['acc'],
                                            variants['amfir_flow']['acc'])
    # frozen features, no adapter: a temperature cannot change a branch's
    # arg-max
    assert variants['amfir_frozen_rgb']['per_fold'] == variants['rgb'][
        'per_fold']
    assert result['episodes'] == 100 and result['flow_method'] == 'dis'
    assert result['num_folds'] == 1 and result['eval_videos'] == 50
    assert result['folds'][0]['eval_classes'] == sorted(
        p.name for p in (root / 'val').iterdir() if p.is_dir())
    assert {'amfir-late_fusion',
            'amfir-amfir_mean_pi'} <= set(result['paired'])
    skill = result['asi']['amfir']
    assert skill['base_rate_flow']['mean'] + skill['base_rate_rgb'][
        'mean'] == pytest.approx(
            100, abs=1e-3)
    # adapters: 2 * (1280 * 64 * 2 + 64 * 64 * 3 + 64 * 2 + 1280) + 2 tau
    adapter = 1280 * 64 * 2 + 64 * 64 * 3 + 64 * 2 + 1280
    asi = result['trainable']['amfir']['parts']['asi']
    assert result['trainable']['amfir']['total'] == 2 * adapter + 2 + asi
    assert result['trainable']['amfir_frozen']['total'] == 2 + asi
    assert result['trainable']['rgb']['total'] == 1
    assert result['trainable']['rgb_adapter']['total'] == adapter + 1
    assert result['seeds'] == 1 and result['asi_fit'] == 'heldout'
    assert set(result['signal_auroc']['amfir']) >= {
        'pi_flow', 'distance_margin', 'episode_rank', 'prototype_spread',
        'support_loo_accuracy', 'cross_probability'
    }
    episodes = json.loads(Path(result['episodes_file']).read_text())
    assert len(episodes['episodes']) == 100
    assert (tmp_path / 'work' / 'flow_dis' / 'eval').is_dir()

    # benchmarks/asi_inner_fit.py on the same work dir: inner splits of
    # the training classes only; ASI's lr multiplier reaches its weights
    inner = load_script('benchmarks/asi_inner_fit.py', 'asi_inner_fit')
    fit = inner.main(base[:6] + [
        '--work-dir',
        str(tmp_path / 'work'), '--out',
        str(tmp_path /
            'inner.json'), '--flow', 'dis', '--views', '1', '--use-folds', '1',
        '--lr-mults', '1', '10', '--iters', '5', '--inner-episodes', '20'
    ])
    assert set(fit['runs']) == {'1', '10'}
    for runs in fit['runs'].values():
        assert [r['split'] for r in runs] == list(range(5))
        for r in runs:
            assert set(r['held_out']) < set(fit['train_classes'][0])
            assert 0 <= r['auroc_pi'] <= 100 and 0 <= r['accuracy'] <= 100
    # 5 Adam steps move a weight by about lr each: 1e-3 against 1e-2
    weights = {
        m: max(r['scorer_weight_max'] for r in runs)
        for m, runs in fit['runs'].items()
    }
    assert weights['10'] > 3 * weights['1'] and weights['1'] < 0.006

    out = tmp_path / 'cv.json'
    bench.main(base + [
        '--out',
        str(out), '--folds', '2', '--ablations', '--transductive', '--select'
    ])
    result = json.loads(out.read_text())
    assert result['timings']['flow_s'] < 60  # cached
    assert result['num_folds'] == 2 and result['videos'] == 100
    first, second = result['folds']
    assert first['train_classes'] == second['eval_classes']
    assert not set(first['train_classes']) & set(first['eval_classes'])
    assert set(result['variants']) >= {
        'amfir_no_asi', 'amfir_joint_asi', 'amfir_joint_scorer'
    }
    assert 'asi' not in result['trainable']['amfir_no_asi']['parts']
    assert {
        'flow_adapter_transductive', 'amfir_transductive',
        'late_fusion_transductive'
    } <= set(result['variants'])
    assert set(result['asi']) == {
        'amfir_frozen', 'amfir_ce', 'amfir_ml', 'amfir_amd_pi', 'amfir',
        'amfir_selected', 'amfir_joint_asi', 'amfir_joint_scorer'
    }
    # the inner folds chose among the candidates, on training classes only
    settings = {
        f'{c} beta={b:g}'
        for c in bench.SELECTION['candidates']
        for b in bench.SELECTION['sharpness']
    }
    for fold in result['folds']:
        chosen = fold['selection']
        assert set(chosen['inner_accuracy']) == settings
        best = max(chosen['inner_accuracy'].values())
        assert chosen['inner_accuracy'][
            f'{chosen["candidate"]} beta={chosen["sharpness"]:g}'] == best
    # a candidate trained as an existing arm reuses its model: its branches
    # are that arm's (AMI's sharpness changes only the fusion)
    twin = dict(frozen='amfir_frozen', adapter='amfir')
    for f, fold in enumerate(result['folds']):
        other = twin.get(fold['selection']['candidate'])
        for m in ('rgb', 'flow') if other else ():
            assert result['variants'][f'amfir_selected_{m}']['per_fold'][
                f] == result['variants'][f'{other}_{m}']['per_fold'][f]
    assert ('amfir_selected', 'amfir_selected_mean_pi') in [
        tuple(k.split('-')) for k in result['paired']
    ]
    for v in result['variants'].values():
        assert len(v['per_fold']) == 2
        assert v['acc'] == pytest.approx(np.mean(v['per_fold']), abs=0.01)
    table = bench.report_markdown([result], [str(out)])
    assert 'ablation: no ASI' in table and 'AUROC' in table
    assert 'label-free signals' in table
    assert 'AMFIR − best single-modality model' in table
    assert 'inner-fold selection' in table
    assert 'settings chosen on inner folds − best single' in table
    assert table.count('<details>') == 1 and table.endswith('</details>')
    assert_fold_workers_change_nothing(bench, base, tmp_path)


def assert_fold_workers_change_nothing(bench, base, tmp_path):
    """Folds run in two forked processes give the sequential results, in
    fold order (each fold seeds its own generators)."""
    runs = {}
    for workers in (1, 2):
        out = tmp_path / f'fold_workers{workers}.json'
        bench.main(base + [
            '--out',
            str(out), '--folds', '2', '--iters', '5', '--fold-workers',
            str(workers)
        ])
        runs[workers] = json.loads(out.read_text())
    for key in ('variants', 'paired', 'asi', 'signal_auroc'):
        assert runs[2][key] == runs[1][key], key
    assert [f['eval_classes'] for f in runs[2]['folds']
            ] == [f['eval_classes'] for f in runs[1]['folds']]
    # the two folds score different classes: a swapped order would show
    assert runs[1]['variants']['amfir']['per_fold'][0] != runs[1]['variants'][
        'amfir']['per_fold'][1]


def test_forked_map_keeps_order_and_reports_failures(bench):
    """Results in order from two forked workers; a lambda is fine (nothing
    is pickled but the results); a worker's exception and a worker's death
    are errors in the parent."""
    parent = os.getpid()
    out = list(bench.forked_map(lambda i: (i * i, os.getpid()), 5, 2))
    assert [value for value, _ in out] == [0, 1, 4, 9, 16]
    pids = [pid for _, pid in out]
    assert parent not in pids and len(set(pids)) == 2

    def fail(i):
        if i == 3:
            raise ValueError('bad item')
        return i

    with pytest.raises(RuntimeError, match=r'item 3 failed[\s\S]*bad item'):
        list(bench.forked_map(fail, 5, 2, poll_s=0.2))

    def die(i):
        if i == 1:
            os._exit(3)
        return i

    with pytest.raises(RuntimeError, match='item 1 exited without a result'):
        list(bench.forked_map(die, 4, 2, poll_s=0.2))


def test_evidence_signals_and_aurocs_by_hand(bench):
    # 1 episode, 4 queries, 3 classes
    rgb = np.array([[[0.6, 0.3, 0.1], [0.4, 0.4, 0.2], [0.2, 0.5, 0.3],
                     [0.1, 0.1, 0.8]]])
    flow = np.array([[[0.2, 0.7, 0.1], [0.9, 0.05, 0.05], [0.3, 0.3, 0.4],
                      [0.5, 0.25, 0.25]]])
    pi = np.array([[[0.4, 0.6], [0.3, 0.7], [0.8, 0.2], [0.5, 0.5]]])
    # episode evidence: distance_margin (rgb, flow), then support
    # consistency (loo rgb, loo flow, ratio rgb, ratio flow)
    evidence = np.array([[[0.1, 0.3, 1.0, 0.5, 0.2, 0.4]] * 4])
    pred = dict(
        rgb_score=rgb,
        flow_score=flow,
        reliability=pi,
        episode_evidence=evidence)
    signals = bench.evidence_signals(pred, ('distance_margin',
                                            'support_consistency'))
    np.testing.assert_allclose(signals['pi_flow'], pi[..., 1])
    np.testing.assert_allclose(signals['top_probability'][0],
                               [0.1, 0.5, -0.1, -0.3])
    np.testing.assert_allclose(signals['probability_margin'][0],
                               [0.2, 0.85, 0.1 - 0.2, 0.25 - 0.7])
    # p_rgb(flow's top class) - p_flow(rgb's top class)
    np.testing.assert_allclose(signals['cross_probability'][0],
                               [0.3 - 0.2, 0.4 - 0.9, 0.3 - 0.3, 0.1 - 0.25])
    np.testing.assert_allclose(signals['distance_margin'], 0.2)
    np.testing.assert_allclose(signals['support_loo_accuracy'], -0.5)
    np.testing.assert_allclose(signals['support_within_between'], 0.2 - 0.4)
    # queries 0, 1: only flow right; 2: only rgb; 3: both right
    rgb_ok = np.array([[False, False, True, True]])
    flow_ok = np.array([[True, True, False, True]])
    auc = bench.signal_aurocs(signals, rgb_ok, flow_ok)
    assert auc['pi_flow'] == 100  # 0.6, 0.7 above 0.2
    assert auc['top_probability'] == 100  # 0.1, 0.5 above -0.1
    assert auc['distance_margin'] == 50  # all tied


def test_split_videos_halves_each_class(bench):
    labels = np.repeat(np.arange(3), [4, 5, 6])
    videos = np.arange(15)
    first, second = bench.split_videos(videos, labels, seed=0)
    assert sorted(np.concatenate([first, second])) == list(range(15))
    assert list(np.bincount(labels[first])) == [2, 2, 3]
    assert list(np.bincount(labels[second])) == [2, 3, 3]
    again = bench.split_videos(videos, labels, seed=0)
    assert np.array_equal(again[0], first)


def test_inner_splits_hold_each_class_out_equally(bench):
    splits = bench.inner_splits([3, 5, 6, 8, 9])
    assert len(splits) == 5
    assert splits[0] == ([6, 8, 9], [3, 5])
    assert splits[4] == ([5, 6, 8], [9, 3])
    for train, held_out in splits:
        assert sorted(train + held_out) == [3, 5, 6, 8, 9]
    counts = np.bincount([c for _, out in splits for c in out])
    assert set(counts[[3, 5, 6, 8, 9]]) == {2}
    with pytest.raises(ValueError, match='2 classes on either side'):
        bench.inner_splits([0, 1, 2])


def test_training_twin_finds_an_arm_trained_alike(bench):
    models = dict(
        flow=dict(modalities=['flow'], adapter=False),
        amfir_frozen=dict(adapter=False),
        amfir=dict(),
        amfir_selected=dict(adapter=False, fusion_sharpness=2.0))
    assert bench.training_twin(models, 'amfir_selected') == 'amfir_frozen'
    assert bench.training_twin(models, 'amfir') is None
    assert bench.training_twin(models, 'flow') is None
    models['amfir_selected'] = dict(relation_weight=50.0)
    assert bench.training_twin(models, 'amfir_selected') is None
    models['amfir_selected'] = dict(fusion_sharpness=1.0)
    assert bench.training_twin(models, 'amfir_selected') == 'amfir'


def test_arm_configs_change_one_thing(bench):
    from mmengine.config import Config
    cfg = Config.fromfile(bench.CONFIG)
    base = bench.arm_model_config(cfg, bench.MODELS['amfir'])
    assert base.rgb.cls_head.adapter.type == 'TemporalAdapter'
    assert base.amd_weights == 'target'
    frozen = bench.arm_model_config(cfg, bench.MODELS['amfir_frozen'])
    assert 'adapter' not in frozen.rgb.cls_head
    assert 'adapter' not in frozen.flow.cls_head
    assert bench.arm_model_config(cfg,
                                  bench.MODELS['amfir_ce']).loss_amd is None
    assert bench.arm_model_config(
        cfg, bench.MODELS['amfir_ml']).amd_weights == 'uniform'
    assert bench.arm_model_config(
        cfg, bench.MODELS['amfir_amd_pi']).amd_weights == 'reliability'
    single = bench.arm_model_config(cfg, bench.MODELS['rgb'])
    assert single.modalities == ['rgb'] and 'adapter' not in \
        single.rgb.cls_head
    scorer = bench.arm_model_config(cfg, bench.ABLATIONS['amfir_joint_scorer'])
    assert (scorer.asi.scorer, scorer.asi.hidden_channels) == ('joint', 32)
    assert scorer.asi.episode_evidence == cfg.model.asi.episode_evidence
    assert cfg.model.asi.scorer == 'shared'
    relations = bench.arm_model_config(
        cfg, bench.SELECTION['candidates']['adapter_relations'])
    assert relations.loss_amd == dict(cfg.model.loss_amd, relation_weight=50)
    assert relations.rgb.cls_head.adapter == cfg.model.rgb.cls_head.adapter
    assert 'relation_weight' not in cfg.model.loss_amd
    disagreement = bench.arm_model_config(
        cfg, bench.SELECTION['candidates']['frozen_asi_disagreement'])
    assert disagreement.loss_asi == dict(
        cfg.model.loss_asi, queries='disagreement')
    assert 'adapter' not in disagreement.flow.cls_head
    assert 'queries' not in cfg.model.loss_asi
    joint = bench.arm_model_config(cfg, bench.ABLATIONS['amfir_joint_asi'])
    assert 'asi_fit' not in joint
    assert cfg.model.rgb.cls_head.adapter  # the config is not changed


def test_comparisons_cover_the_goals(bench):
    names = [
        'rgb', 'flow', 'rgb_adapter', 'flow_adapter', 'amfir_ce', 'amfir',
        'amfir_rgb', 'amfir_flow', 'amfir_mean_pi', 'amfir_ce_rgb',
        'amfir_ce_flow', 'amfir_ce_mean_pi', 'flow_transductive',
        'amfir_transductive', 'oracle'
    ]
    pairs = bench.comparisons(names)
    assert ('amfir', 'flow_adapter') in pairs
    assert ('amfir', 'amfir_mean_pi') in pairs
    assert ('amfir_ce', 'amfir_ce_mean_pi') in pairs
    assert ('amfir_rgb', 'amfir_ce_rgb') in pairs  # does AMD lift RGB?
    assert ('amfir_transductive', 'flow_transductive') in pairs
    assert ('amfir', 'amfir_ce_rgb') not in pairs  # other models' parts


def test_variant_labels(bench):
    assert bench.variant_label('amfir_rgb') == (
        "AMFIR (the config: adapter, AMD weighted by r, ASI, AMI)'s RGB "
        'branch')
    assert bench.variant_label('amfir_selected_flow') == (
        'AMFIR, settings chosen on inner folds of the training classes\' '
        'flow branch')
    assert bench.variant_label('amfir_selected_mean_pi').endswith(
        'classes, π = mean π of the test queries')
    assert bench.variant_label('unknown_x') == 'unknown_x'
