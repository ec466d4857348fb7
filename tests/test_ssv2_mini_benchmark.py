"""benchmarks/ssv2_mini.py: the paired video bootstrap and the --quick run."""
import json
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
    res = bench.bootstrap_difference(always, never, queries, supports, 20,
                                     200)
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


def test_quick_run(bench, shared_data, tmp_path):
    root = shared_data / 'ssv2_mini'
    out = tmp_path / 'result.json'
    bench.main([
        '--train-root', str(root / 'train'), '--eval-root',
        str(root / 'val'), '--shots', '1', '--episodes', '100',
        '--work-dir', str(tmp_path / 'work'), '--out', str(out), '--quick',
        '--bootstrap', '200'
    ])
    result = json.loads(out.read_text())
    variants = result['variants']
    assert set(variants) >= {'rgb', 'flow', 'late_fusion', 'amfir',
                             'amfir_rgb', 'amfir_flow', 'oracle'}
    for name, v in variants.items():
        assert 0 <= v['acc'] <= 100 and v['ci95'] > 0, name
    # the oracle is right whenever an AMFIR branch is
    assert variants['oracle']['acc'] >= max(variants['amfir_rgb']['acc'],
                                            variants['amfir_flow']['acc'])
    assert result['episodes'] == 100 and result['flow_method'] == 'dis'
    assert result['eval_videos'] == 50
    assert {'amfir-late_fusion'} <= set(result['paired'])
    episodes = json.loads(Path(result['episodes_file']).read_text())
    assert len(episodes['episodes']) == 100
    # flow is cached: a second extraction skips every video
    assert (tmp_path / 'work' / 'flow_dis' / 'eval').is_dir()
