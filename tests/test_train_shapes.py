"""End to end: the demo meta-trains on generated shapes through MMEngine's
Runner, and the meta-tested model beats chance on novel classes by more
than its 95% CI."""
import json
import subprocess
import sys

import pytest

from conftest import PROJECT_ROOT


@pytest.mark.slow
def test_demo_trains_and_beats_chance(tmp_path):
    cmd = [
        sys.executable, 'tools/demo.py', '--data',
        str(tmp_path / 'shapes'), '--work-dir',
        str(tmp_path / 'work'), '--cfg-options', 'train_cfg.max_iters=60',
        'train_cfg.val_interval=1000', 'param_scheduler.0.T_max=60',
        'test_dataloader.dataset.num_episodes=200',
        'default_hooks.checkpoint.interval=60'
    ]
    proc = subprocess.run(
        cmd, cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads((tmp_path / 'work' / 'demo_result.json').read_text())
    last = proc.stdout.strip().splitlines()[-1]  # the README's line format
    assert last == summary['summary_line']
    assert last.startswith('novel-class 5-way 1-shot accuracy: ')
    assert last.endswith('; 200 test episodes)')
    assert 'Config:' not in proc.stdout  # in the log file only
    assert summary['fewshot/num_episodes'] == 200
    chance = 100 / 5
    assert summary['fewshot/accuracy'] - summary['fewshot/ci95'] > chance, \
        summary
    # one checkpoint, the final weights (what tools/test.py needs)
    assert sorted(p.name for p in (tmp_path / 'work').glob('*.pth')) == \
        ['iter_60.pth']
    assert (tmp_path / 'work' / 'episode_accuracy.json').is_file()
