"""Two processes (gloo, CPU) train and meta-test through tools/dist_*.sh;
the gathered metric equals the single-process metric on the same episodes."""
import json
import os
import shutil
import subprocess
import sys

import pytest

from conftest import PROJECT_ROOT

CONFIG = '''
_base_ = ['{root}/configs/_base_/default_runtime.py',
          '{root}/configs/_base_/schedules/fewshot_iter.py']
model = dict(
    type='FewShotRecognizer',
    backbone=dict(type='ResNet', depth=18, pretrained=None, norm_eval=False),
    cls_head=dict(type='PrototypeHead'),
    data_preprocessor=dict(type='ActionDataPreprocessor', mean=[127.5] * 3,
                           std=[64.] * 3, format_shape='NCHW'))
pipeline = [
    dict(type='SampleFrames', clip_len=1, num_clips=3, test_mode=True),
    dict(type='RawFrameDecode'),
    dict(type='FormatShape', input_format='NCHW'),
    dict(type='PackActionInputs')]
videos = dict(type='FewShotRawframeDataset', ann_file='{split}',
              data_prefix=dict(img='{frames}'), pipeline=pipeline)
train_dataloader = dict(
    batch_size=1, num_workers=0,
    sampler=dict(type='InfiniteSampler', shuffle=True),
    dataset=dict(type='EpisodicDataset', dataset=videos, num_ways=3,
                 num_shots=1, num_queries=1, num_episodes=1000, seed=1))
test_dataloader = dict(
    batch_size=1, num_workers=0,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(type='EpisodicDataset', dataset=videos, num_ways=3,
                 num_shots=2, num_queries=2, num_episodes=15, seed=2))
val_dataloader = test_dataloader
test_evaluator = dict(type='FewShotAccuracy')
val_evaluator = test_evaluator
train_cfg = dict(max_iters=4, val_interval=4)
default_hooks = dict(checkpoint=dict(interval=4, save_best=None))
env_cfg = dict(dist_cfg=dict(backend='gloo'))
'''


def _run(cmd, env):
    proc = subprocess.run(
        cmd,
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        env=env)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    return proc


def _config_and_env(frame_tree, tmp_path, port_base):
    """The test config written for ``frame_tree``, and the launch scripts'
    environment (one thread a process, a port of its own)."""
    config = tmp_path / 'dist_cfg.py'
    config.write_text(
        CONFIG.format(
            root=PROJECT_ROOT,
            split=frame_tree['split'],
            frames=frame_tree['root']))
    env = dict(
        os.environ,
        PYTHON=sys.executable,
        OMP_NUM_THREADS='1',
        PORT=str(port_base + os.getpid() % 1000))
    return config, env


def _episodes(work_dir):
    with open(os.path.join(work_dir, 'episode_accuracy.json')) as f:
        return sorted(
            (e['episode_index'], e['accuracy']) for e in json.load(f))


@pytest.mark.slow
@pytest.mark.skipif(shutil.which('bash') is None, reason='needs bash')
def test_two_process_train_and_gathered_test(frame_tree, tmp_path):
    config, env = _config_and_env(frame_tree, tmp_path, port_base=29500)
    train_dir = tmp_path / 'train'
    _run([
        'bash', 'tools/dist_train.sh',
        str(config), '2', '--work-dir',
        str(train_dir)
    ], env)
    ckpt = train_dir / 'iter_4.pth'
    assert ckpt.is_file()

    # one process draws the episodes and saves them; two processes test on
    # that file
    episodes = tmp_path / 'episodes.json'
    one = tmp_path / 'test1'
    _run([
        sys.executable, 'tools/test.py',
        str(config),
        str(ckpt), '--work-dir',
        str(one), '--episodes',
        str(episodes)
    ], env)
    assert episodes.is_file()
    two = tmp_path / 'test2'
    _run([
        'bash', 'tools/dist_test.sh',
        str(config),
        str(ckpt), '2', '--work-dir',
        str(two), '--episodes',
        str(episodes)
    ], env)
    gathered, single = _episodes(two), _episodes(one)
    assert [e for e, _ in gathered] == list(range(15))  # no duplicates
    assert gathered == single


@pytest.mark.slow
@pytest.mark.skipif(shutil.which('bash') is None, reason='needs bash')
def test_two_process_channels_last_train(frame_tree, tmp_path):
    """``--channels-last`` through dist_train.sh: ChannelsLastRunner
    converts the model before DDP wraps it; gloo broadcasts and reduces the
    NHWC-strided tensors."""
    config, env = _config_and_env(frame_tree, tmp_path, port_base=30500)
    train_dir = tmp_path / 'train'
    proc = _run([
        'bash', 'tools/dist_train.sh',
        str(config), '2', '--work-dir',
        str(train_dir), '--channels-last', '--no-validate'
    ], env)
    assert (train_dir / 'iter_4.pth').is_file()
    assert "inputs of ['backbone'] converted" in proc.stdout + proc.stderr
