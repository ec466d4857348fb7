"""What a user meets first in the tools: the launch scripts find the
project's Python, data errors are one line (traceback in the log), a run
that fails before training leaves no work dir, the terminal is short (the
config goes to the log file), the demo's last line is the README's,
extract_flow's help / Ctrl-C / rerun messages, plots with class names."""
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest

from amfir_mm.datasets import EpisodeError, EpisodicDataset
from amfir_mm.utils.io import DataError
from amfir_mm.utils.tool import accuracy_summary, plural, run_tool
from conftest import PROJECT_ROOT, load_script, write_frame_tree
from test_distributed import CONFIG

TOOLS = PROJECT_ROOT / 'tools'
LOG_ONLY = ('Config:', 'System environment:', 'Hooks will be executed')


# -- launch scripts -------------------------------------------------------
def _fake_repo(tmp_path, script):
    """``repo/tools/<script>`` (+ find_python.sh) and a fake
    ``repo/.venv/bin/python`` that records its arguments."""
    tools = tmp_path / 'repo' / 'tools'
    tools.mkdir(parents=True)
    for name in (script, 'find_python.sh'):
        shutil.copy(TOOLS / name, tools / name)
    calls = tmp_path / 'calls.txt'
    python = tmp_path / 'repo' / '.venv' / 'bin' / 'python'
    python.parent.mkdir(parents=True)
    python.write_text(f'#!/bin/sh\necho "$@" >> {calls}\n')
    python.chmod(0o755)
    return tools, calls


@pytest.mark.skipif(shutil.which('bash') is None, reason='needs bash')
@pytest.mark.parametrize('script,args,expected', [
    ('dist_train.sh', ['my_cfg.py', '2', '--seed', '3'],
     r'--nproc_per_node=2 .*/tools/train\.py my_cfg\.py --launcher pytorch '
     r'--seed 3$'),
    ('dist_test.sh', ['my_cfg.py', 'none', '3', '--dump', 'x.pkl'],
     r'--nproc_per_node=3 .*/tools/test\.py my_cfg\.py none --launcher '
     r'pytorch --dump x\.pkl$'),
])
def test_launch_scripts_run_the_projects_venv(tmp_path, script, args,
                                              expected):
    """From a shell without the venv (a bare PATH, no PYTHON) the scripts
    run ``<repo>/.venv/bin/python``, not whatever ``python`` is on PATH."""
    tools, calls = _fake_repo(tmp_path, script)
    proc = subprocess.run([
        'env', '-i', 'PATH=/usr/bin:/bin', 'bash',
        str(tools / script), *args
    ],
                          cwd=tmp_path,
                          capture_output=True,
                          text=True,
                          timeout=60)
    assert proc.returncode == 0, proc.stderr
    lines = calls.read_text().splitlines()
    assert lines[0] == '-c import torch'  # the up-front check
    assert lines[1].startswith('-m torch.distributed.run ')
    assert re.search(expected, lines[1]), lines[1]


@pytest.mark.skipif(shutil.which('bash') is None, reason='needs bash')
def test_launch_scripts_take_python_from_the_environment(tmp_path):
    tools, calls = _fake_repo(tmp_path, 'dist_train.sh')
    other = tmp_path / 'other_python'
    other.write_text(f'#!/bin/sh\necho other "$@" >> {calls}\n')
    other.chmod(0o755)
    proc = subprocess.run([
        'env', '-i', 'PATH=/usr/bin:/bin', f'PYTHON={other}', 'bash',
        str(tools / 'dist_train.sh'), 'c.py', '1'
    ],
                          cwd=tmp_path,
                          capture_output=True,
                          text=True,
                          timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert all(
        line.startswith('other ') for line in calls.read_text().splitlines())


@pytest.mark.skipif(shutil.which('bash') is None, reason='needs bash')
def test_launch_script_without_a_python_says_so(tmp_path):
    tools, calls = _fake_repo(tmp_path, 'dist_test.sh')
    broken = tmp_path / 'no_torch_python'
    broken.write_text('#!/bin/sh\nexit 1\n')
    broken.chmod(0o755)
    proc = subprocess.run([
        'env', '-i', 'PATH=/usr/bin:/bin', f'PYTHON={broken}', 'bash',
        str(tools / 'dist_test.sh'), 'c.py', 'none', '1'
    ],
                          cwd=tmp_path,
                          capture_output=True,
                          text=True,
                          timeout=60)
    assert proc.returncode == 1
    assert proc.stderr.strip() == (
        f'error: {broken} cannot import torch: run bash tools/install.sh, '
        "or set PYTHON to the python of the project's environment")


@pytest.mark.slow
@pytest.mark.skipif(shutil.which('bash') is None, reason='needs bash')
def test_dist_test_runs_from_a_shell_without_the_venv(frame_tree, tmp_path):
    """The real script, with ``PATH=/usr/bin:/bin`` and nothing else: it
    finds ``.venv/bin/python`` and meta-tests (gloo picked by itself)."""
    if not (PROJECT_ROOT / '.venv' / 'bin' / 'python').exists():
        pytest.skip('no .venv in this checkout')
    config = tmp_path / 'cfg.py'
    config.write_text(
        CONFIG.format(
            root=PROJECT_ROOT,
            split=frame_tree['split'],
            frames=frame_tree['root']).replace(
                "env_cfg = dict(dist_cfg=dict(backend='gloo'))", ''))
    proc = subprocess.run([
        'env', '-i', 'PATH=/usr/bin:/bin', 'OMP_NUM_THREADS=1',
        f'PORT={29700 + os.getpid() % 200}', 'bash', 'tools/dist_test.sh',
        str(config), 'none', '1', '--work-dir',
        str(tmp_path / 'work')
    ],
                          cwd=PROJECT_ROOT,
                          capture_output=True,
                          text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    assert re.search(
        r'^novel-class 3-way 2-shot accuracy: .* % \(15 test '
        r'episodes\)$', proc.stdout, re.M), proc.stdout[-2000:]


# -- one line for a data error, no work dir left ---------------------------
def test_run_tool_prints_a_data_error_as_one_line(capsys, tmp_path,
                                                  monkeypatch):
    monkeypatch.setattr(tempfile, 'tempdir', str(tmp_path))

    def main(argv):
        raise EpisodeError('episodes.json: episode 3 names video '
                           "'a/b', which is not in the dataset")

    assert run_tool(main, 'mytool') == 1
    out, err = capsys.readouterr()
    assert err == ('EpisodeError: episodes.json: episode 3 names video '
                   "'a/b', which is not in the dataset\n")
    log = re.fullmatch(r'full traceback: (.*)\n', out).group(1)
    assert Path(log).parent == tmp_path / 'amfir_mm'
    text = Path(log).read_text()
    assert 'Traceback (most recent call last)' in text
    assert "raise EpisodeError('episodes.json" in text


def test_run_tool_usage_errors_and_bugs(capsys, tmp_path, monkeypatch):
    monkeypatch.setattr(tempfile, 'tempdir', str(tmp_path))

    class Unsupported(RuntimeError):
        pass

    def usage(argv):
        raise Unsupported('AMP needs a GPU')

    assert run_tool(usage, 't', usage_errors=(Unsupported, )) == 1
    assert capsys.readouterr().err == 'error: AMP needs a GPU\n'

    def bug(argv):
        raise ZeroDivisionError('a bug')

    with pytest.raises(ZeroDivisionError):  # not hidden as a data error
        run_tool(bug, 't')
    assert run_tool(lambda argv: 3, 't') == 3
    assert run_tool(lambda argv: {'metrics': 1}, 't') == 0


def _bad_split_config(tmp_path, frame_tree):
    """The small test config, its training split with a malformed line 3."""
    split = tmp_path / 'bad_train.txt'
    lines = list(frame_tree['lines'])
    lines[2] = 'no_slash_here'
    split.write_text('\n'.join(lines) + '\n')
    config = tmp_path / 'cfg.py'
    text = CONFIG.format(
        root=PROJECT_ROOT,
        split=frame_tree['split'],
        frames=frame_tree['root'])
    text += (f"\ntrain_dataloader['dataset']['dataset'] = dict(videos, "
             f"ann_file='{split}')\n")
    config.write_text(text)
    return config, split


@pytest.mark.parametrize('existing', [False, True])
def test_train_data_error_is_one_line_and_leaves_no_run(
        frame_tree, tmp_path, capsys, monkeypatch, existing):
    """A malformed split line stops ``tools/train.py`` with one line naming
    file and line; the run's ``<timestamp>/`` folder (and the work dir, if
    the run made it) is removed; what was there before is kept; the log
    (config, environment, traceback) is kept in the temp folder; the
    terminal did not get the config."""
    (tmp_path / 'tmp').mkdir()
    monkeypatch.setattr(tempfile, 'tempdir', str(tmp_path / 'tmp'))
    config, split = _bad_split_config(tmp_path, frame_tree)
    work = tmp_path / 'work'
    if existing:
        work.mkdir()
        (work / 'notes.txt').write_text('mine')
        (work / '20200101_000000').mkdir()  # an earlier run's folder
        (work / 'cfg.py').write_text('an earlier dump')
    tool = load_script('tools/train.py', 'amfir_train_tool_f')
    status = run_tool(tool.main, 'train',
                      [str(config), '--work-dir',
                       str(work)])
    out, err = capsys.readouterr()
    assert status == 1
    assert err == (f'SplitFormatError: {split}:3: expected '
                   '"<class>/<video_id>", got \'no_slash_here\'\n')
    if existing:
        assert sorted(
            os.listdir(work)) == ['20200101_000000', 'cfg.py', 'notes.txt']
    else:
        assert not work.exists()
    assert out.startswith('[train] FewShotRecognizer from ')
    assert not any(marker in out for marker in LOG_ONLY), out
    log = Path(re.search(r'^full traceback: (.*)$', out, re.M).group(1))
    assert log.parent == tmp_path / 'tmp' / 'amfir_mm'
    text = log.read_text()
    assert all(marker in text for marker in LOG_ONLY)
    assert 'Traceback (most recent call last)' in text


def test_too_few_videos_message_counts_in_words(tmp_path):
    root = tmp_path / 'frames'
    lines = write_frame_tree(str(root), ['a', 'b', 'c'], 2)
    lines += write_frame_tree(str(root), ['d'], 1)
    split = tmp_path / 'train.txt'
    split.write_text('\n'.join(lines) + '\n')
    videos = dict(
        type='FewShotRawframeDataset',
        ann_file=str(split),
        data_prefix=dict(img=str(root)),
        pipeline=[])
    with pytest.raises(EpisodeError) as info:
        EpisodicDataset(
            videos, num_ways=2, num_shots=1, num_queries=1,
            num_episodes=2).full_init()
    assert str(info.value).startswith(
        f'1 class in {split} has fewer than num_shots + num_queries = 2 '
        'videos: d (1 video)')
    assert isinstance(info.value, DataError)  # one line from the tools


def test_plural():
    assert [plural(n, 'class')
            for n in (0, 1, 2)] == ['0 classes', '1 class', '2 classes']
    assert plural(1, 'video') == '1 video' and \
        plural(500, 'test episode') == '500 test episodes'


# -- the demo's last line and the README -----------------------------------
METRICS = {
    'fewshot/accuracy': 79.88,
    'fewshot/ci95': 1.39,
    'fewshot/num_episodes': 500.0,
    'fewshot/rgb_accuracy': 42.6,
    'fewshot/flow_accuracy': 74.4,
    'fewshot/average_fusion_accuracy': 79.52,
    'fewshot/oracle_accuracy': 80.44
}


def test_accuracy_summary_line():
    assert accuracy_summary(METRICS, 5, 1) == (
        'novel-class 5-way 1-shot accuracy: 79.9 ± 1.4 % (RGB 42.6, flow '
        '74.4, average fusion 79.5, oracle 80.4; 500 test episodes)')
    rgb_only = {
        'fewshot/accuracy': 61.234,
        'fewshot/ci95': 0.96,
        'fewshot/num_episodes': 1
    }
    assert accuracy_summary(rgb_only, 5, 5) == (
        'novel-class 5-way 5-shot accuracy: 61.2 ± 1.0 % (1 test episode)')


def test_readme_quotes_the_recorded_lines():
    """The README quotes the last line of the demo and of the real-data
    recipe's test as the formatter writes it for the recorded runs'
    metrics (``benchmarks/results/demo_shapes.json``,
    ``amfir_smoke_test10k.json``)."""
    lines = []
    for name in ('demo_shapes', 'amfir_smoke_test10k'):
        record = json.loads((PROJECT_ROOT / 'benchmarks' / 'results' /
                             f'{name}.json').read_text())
        lines.append(accuracy_summary(record['metrics'], 5, 1))
        if 'summary_line' in record:
            assert record['summary_line'] == lines[-1]
    readme = (PROJECT_ROOT / 'README.md').read_text()
    quoted = re.findall(r'`(novel-class 5-way 1-shot accuracy: [^`]*)`',
                        readme.replace('\n', ' '))
    assert sorted(quoted) == sorted(lines), (quoted, lines)


def test_demo_ends_with_the_summary_line(tmp_path, monkeypatch, capsys):
    """``tools/demo.py`` prints the formatter's line last and records it,
    without training (its runner is replaced by a stub)."""
    demo = load_script('tools/demo.py', 'amfir_demo_tool')
    monkeypatch.setattr(demo, 'make_shapes_dataset', lambda root: None)

    class StubRunner:

        def train(self):
            print('training')

        def test(self):
            return dict(METRICS)

    monkeypatch.setattr(demo, 'build_tool_runner', lambda cfg: StubRunner())
    (tmp_path / 'work').mkdir()
    demo.main([
        '--data',
        str(tmp_path / 'data'), '--work-dir',
        str(tmp_path / 'work')
    ])
    out = capsys.readouterr().out
    assert out.splitlines()[-1] == accuracy_summary(METRICS, 5, 1)
    assert out.startswith('[demo] AMFIRRecognizer from configs/demo/')
    assert 'expected time: about 10 min' in out
    record = json.loads((tmp_path / 'work' / 'demo_result.json').read_text())
    assert record['summary_line'] == out.splitlines()[-1]


def test_demo_config_keeps_one_light_checkpoint_and_logs_early():
    from mmengine.config import Config
    cfg = Config.fromfile(
        str(PROJECT_ROOT / 'configs/demo/amfir_shapes_1shot_r18.py'))
    checkpoint = cfg.default_hooks.checkpoint
    assert checkpoint.interval == cfg.train_cfg.max_iters
    assert checkpoint.max_keep_ckpts == 1 and checkpoint.save_best is None
    assert checkpoint.save_optimizer is False
    assert cfg.default_hooks.logger.interval <= 10


# -- extract_flow ------------------------------------------------------------
def test_extract_flow_help_explains_layout_resume_and_methods():
    proc = subprocess.run([sys.executable, 'tools/extract_flow.py', '--help'],
                          cwd=PROJECT_ROOT,
                          capture_output=True,
                          text=True,
                          timeout=300)
    assert proc.returncode == 0
    text = ' '.join(proc.stdout.split())
    for phrase in ('x_00001.jpg', '.done.json', 'Resume: rerun the same '
                   'command', 'partial', 'default: dis', 'tvl1 (OpenCV TV-L1',
                   'Ctrl-C'):
        assert phrase in text, phrase


def _videos(tmp_path, count):
    from test_flow_extraction import write_video
    src = tmp_path / 'src'
    for i in range(count):
        write_video(src / 'cls' / f'v{i}.avi', 4, size=(32, 32))
    return src


def test_extract_flow_ctrl_c_is_one_line(tmp_path, capsys, monkeypatch):
    import amfir_mm.flow.extraction as extraction
    src, out = _videos(tmp_path, 3), tmp_path / 'out'
    real, calls = extraction.extract_video, []

    def interrupted_at_the_second(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(extraction, 'extract_video', interrupted_at_the_second)
    tool = load_script('tools/extract_flow.py', 'extract_flow_tool_f')
    status = run_tool(tool.main, 'extract_flow',
                      [str(src), str(out), '--no-progress'])
    assert status == 130
    err = capsys.readouterr().err.strip()
    assert err == (f'interrupted: 1 of 3 videos done in {out}; rerun the '
                   'same command to resume')


def test_extract_flow_rerun_says_which_settings_changed(tmp_path, monkeypatch):
    import mmengine.logging

    from amfir_mm.flow.extraction import run_extraction
    src, out = _videos(tmp_path, 2), tmp_path / 'out'
    run_extraction(str(src), str(out), 'dis', progress=False)
    messages = []
    monkeypatch.setattr(
        mmengine.logging, 'print_log',
        lambda msg, **kwargs: messages.append(msg)
        if msg.startswith('re-extract') else None)
    run_extraction(str(src), str(out), 'dis', progress=False)
    assert messages == []  # same settings: skipped silently
    run_extraction(str(src), str(out), 'farneback', progress=False)
    assert len(messages) == 1
    assert messages[0].startswith(
        're-extracting 2 finished videos made with other settings '
        "(estimator: DISFlowEstimator(preset='medium') -> "
        'FarnebackFlowEstimator(')
    assert messages[0].endswith('; to keep the old output, stop (Ctrl-C) '
                                'and rerun with the old settings')


# -- plots ---------------------------------------------------------------
def test_per_class_plot_names_the_classes():
    from amfir_mm.evaluation.fewshot_metric import per_class_figure
    results = [
        dict(
            query_class=np.array([2, 0, 2]),
            correct=np.array([True, False, True]))
    ]
    fig = per_class_figure(results, ['pour', 'push', 'lift'])
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == ['pour', 'lift']
    assert [p.get_height() for p in ax.patches] == [0.0, 100.0]
    fig = per_class_figure(results)
    assert [t.get_text() for t in fig.axes[0].get_xticklabels()] == \
        ['0', '2']


def test_flow_frame_errors_print_plain_numbers(tmp_path):
    """Frame indices arrive as numpy integers (``np.int32``); messages show
    them as plain numbers, never ``np.int32(1)``."""
    import cv2

    from amfir_mm.datasets.transforms import PairedRawFrameDecode
    from amfir_mm.datasets.transforms.paired import paired_flow_indices
    video = tmp_path / 'v'
    video.mkdir()
    for t in range(1, 5):
        cv2.imwrite(
            str(video / f'img_{t:05d}.jpg'), np.zeros((8, 8, 3), np.uint8))
    cv2.imwrite(str(video / 'x_00001.jpg'), np.zeros((8, 8), np.uint8))
    results = dict(
        frame_dir=str(video),
        filename_tmpl='img_{:05d}.jpg',
        frame_inds=np.array([1, 2], np.int32),
        total_frames=4,
        start_index=1,
        modality='RGB')
    with pytest.raises(FileNotFoundError) as missing:
        PairedRawFrameDecode().transform(results)
    (video / 'y_00001.jpg').write_bytes(b'garbage')
    with pytest.raises(DataError) as corrupt:
        PairedRawFrameDecode().transform(results)
    with pytest.raises(ValueError) as below:
        paired_flow_indices(np.array([0, 2], np.int32), 1, 3)
    assert str(below.value) == 'frame index 0 is below start_index 1'
    for err in (missing.value, corrupt.value):
        assert 'y_00001.jpg' in str(err) and 'np.' not in str(err)


def test_train_non_finite_loss_is_one_line(frame_tree, tmp_path, capsys,
                                           monkeypatch):
    """A loss that is not finite stops ``tools/train.py`` with the guard's
    one-line message (iteration, loss term, what to do) on stderr, status
    1, its traceback in the run's log. At iteration 1 nothing has trained
    yet: the run's folder goes, as for a data error, its log kept in the
    temp folder."""
    monkeypatch.setattr(tempfile, 'tempdir', str(tmp_path))
    config = tmp_path / 'cfg.py'
    config.write_text(
        CONFIG.format(
            root=PROJECT_ROOT,
            split=frame_tree['split'],
            frames=frame_tree['root']) +
        # 1e999 is inf: every loss_cls is inf from the first iteration
        "model['cls_head']['loss_cls'] = dict(type='CrossEntropyLoss', "
        'loss_weight=1e999)\n')
    tool = load_script('tools/train.py', 'amfir_train_tool_nonfinite')
    work = tmp_path / 'work'
    status = run_tool(tool.main, 'train',
                      [str(config), '--work-dir',
                       str(work)], **tool.TOOL_ERRORS)
    out, err = capsys.readouterr()
    assert status == 1
    assert err.count('\n') == 1, err
    assert err.startswith('NonFiniteLossError: non-finite loss at iteration '
                          '1 of 4: loss_cls = inf'), err
    log = re.search(r'^full traceback: (.*)$', out, re.M).group(1)
    assert Path(log).parent == tmp_path / 'amfir_mm'
    text = Path(log).read_text()
    assert 'Traceback (most recent call last)' in text
    assert 'Config:' in text  # the run's own log, moved
    assert not work.exists()
