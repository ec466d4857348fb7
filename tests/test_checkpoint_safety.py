"""MMEngine checkpoints load with torch's safe (weights_only) loader.

``import amfir_mm`` lets MMEngine's local and ``http(s)://`` checkpoint
loaders accept exactly the globals an MMEngine checkpoint holds
(``amfir_mm.compat``): a real Runner resumes, a pickle that would run code is
refused, and plain ``torch.load`` keeps torch's default.
"""
import functools
import http.server
import os
import pickle
import threading
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn as nn
from mmengine.evaluator import BaseMetric
from mmengine.hooks import Hook
from mmengine.logging import HistoryBuffer
from mmengine.runner import Runner, load_checkpoint
from mmengine.runner.checkpoint import CheckpointLoader

from amfir_mm import compat
from conftest import LineModel, LinePoints

pytestmark = pytest.mark.skipif(
    tuple(int(v) for v in torch.__version__.split('.')[:2]) < (2, 6),
    reason='torch < 2.6 does not load weights_only by default')


class _NumpyMetric(BaseMetric):
    """A metric whose values are numpy objects, as real metrics' often are:
    a float32 scalar (kept by CheckpointHook as ``best_score``) and an array
    (kept in the message hub's runtime info)."""

    def process(self, data_batch, data_samples):
        self.results.extend(s['err'] for s in data_samples)

    def compute_metrics(self, results):
        errs = np.asarray(results, dtype=np.float32)
        return dict(mae=np.float32(errs.mean()), errs=errs[:3])


class _Interrupted(Exception):
    pass


class _InterruptAfter(Hook):
    """Stops training after iteration ``after`` (once its checkpoint is
    saved), as a killed job would."""
    priority = 'LOWEST'

    def __init__(self, after):
        self.after = after

    def after_train_iter(self,
                         runner,
                         batch_idx,
                         data_batch=None,
                         outputs=None):
        if runner.iter + 1 == self.after:
            raise _Interrupted


def _runner(work_dir, resume=False, load_from=None, interrupt_after=None):
    max_iters = 4
    hooks = [] if interrupt_after is None else [
        dict(type=_InterruptAfter, after=interrupt_after)
    ]
    return Runner(
        model=LineModel(),
        work_dir=str(work_dir),
        train_dataloader=dict(
            dataset=LinePoints(),
            sampler=dict(type='InfiniteSampler', shuffle=False),
            batch_size=4,
            num_workers=0),
        val_dataloader=dict(
            dataset=LinePoints(),
            sampler=dict(type='DefaultSampler', shuffle=False),
            batch_size=8,
            num_workers=0),
        val_evaluator=dict(type=_NumpyMetric),
        val_cfg=dict(),
        optim_wrapper=dict(optimizer=dict(type='SGD', lr=0.2, momentum=0.9)),
        param_scheduler=[
            dict(
                type='LinearLR',
                start_factor=0.5,
                by_epoch=False,
                begin=0,
                end=2),
            dict(
                type='MultiStepLR', milestones=[3], gamma=0.1, by_epoch=False)
        ],
        train_cfg=dict(by_epoch=False, max_iters=max_iters, val_interval=1),
        default_hooks=dict(
            logger=dict(type='LoggerHook', interval=1),
            checkpoint=dict(
                type='CheckpointHook',
                interval=2,
                by_epoch=False,
                save_best='mae',
                rule='less')),
        custom_hooks=hooks,
        resume=resume,
        load_from=load_from,
        default_scope='mmaction',
        experiment_name=f'ckpt_{resume}_{id(work_dir)}')


def test_local_loader_is_the_safe_one():
    assert 'mmengine_checkpoint_allowlist' in compat.applied()
    assert CheckpointLoader._get_checkpoint_loader(
        '/some/file.pth') is compat.load_from_local_safely


def test_resume_continues_exactly_like_uninterrupted_training(tmp_path):
    """A real Runner is stopped after iter 2 (checkpoint saved) and a second
    one resumes to iter 4: its weights, learning rate and message hub equal
    those of a run that was never interrupted (so model, SGD momentum, both
    param schedulers and the log history came back), all through torch's
    safe loader."""
    straight = _runner(tmp_path / 'straight')
    straight.train()

    first = _runner(tmp_path / 'resumed', interrupt_after=2)
    with pytest.raises(_Interrupted):
        first.train()
    ckpt = tmp_path / 'resumed' / 'iter_2.pth'
    # what torch's default loader refuses is exactly the allow-listed kind
    unsafe = set(torch.serialization.get_unsafe_globals_in_checkpoint(ckpt))
    assert {
        'mmengine.logging.history_buffer.HistoryBuffer', 'builtins.getattr',
        'numpy.ndarray'
    } <= unsafe
    with pytest.raises(pickle.UnpicklingError, match='Unsupported global'):
        torch.load(ckpt)

    second = _runner(tmp_path / 'resumed', resume=True, load_from=str(ckpt))
    second.train()
    assert second.iter == 4
    for name, value in straight.model.state_dict().items():
        torch.testing.assert_close(second.model.state_dict()[name], value)
        # and training did move on from the iter-2 weights
        assert not torch.equal(first.model.state_dict()[name], value)
    assert second.optim_wrapper.get_lr() == straight.optim_wrapper.get_lr()
    # the log history of iters 1-2 came back with the HistoryBuffers
    loss = second.message_hub.get_scalar('train/loss').data[0]
    np.testing.assert_allclose(
        loss,
        straight.message_hub.get_scalar('train/loss').data[0])
    assert len(loss) == 4
    # numpy objects of the message hub (from the iter-1 validation) load
    # back with their types and values
    info = CheckpointLoader.load_checkpoint(
        str(ckpt))['message_hub']['runtime_info']
    assert type(info['best_score']) is np.float32
    assert info['best_score'] == first.message_hub.get_info('best_score')
    assert info['val/errs'].dtype == np.float32
    np.testing.assert_array_equal(info['val/errs'],
                                  first.message_hub.get_info('val/errs'))


def test_load_from_and_load_checkpoint(tmp_path):
    runner = _runner(tmp_path, interrupt_after=2)
    with pytest.raises(_Interrupted):
        runner.train()
    ckpt = str(tmp_path / 'iter_2.pth')
    model = LineModel()
    nn.init.zeros_(model.fc.weight)
    load_checkpoint(model, ckpt, map_location='cpu')
    torch.testing.assert_close(model.fc.weight, runner.model.fc.weight)
    loaded = CheckpointLoader.load_checkpoint(ckpt, map_location='cpu')
    assert isinstance(loaded['message_hub']['log_scalars']['train/loss'],
                      HistoryBuffer)
    buffer = loaded['message_hub']['log_scalars']['train/loss']
    assert buffer.statistics('mean') == pytest.approx(
        float(np.mean(buffer.data[0])))


def test_allow_list_is_scoped_to_mmengine_loading(tmp_path):
    runner = _runner(tmp_path, interrupt_after=2)
    with pytest.raises(_Interrupted):
        runner.train()
    before = torch.serialization.get_safe_globals()
    CheckpointLoader.load_checkpoint(str(tmp_path / 'iter_2.pth'))
    # torch registers its own classes (e.g. DTensor's) when a module of its
    # is first imported; nothing else may have joined the global list
    added = [
        g for g in torch.serialization.get_safe_globals() if g not in before
    ]
    assert all(
        getattr(g[0] if isinstance(g, tuple) else g, '__module__',
                '').startswith('torch.') for g in added), added
    # plain torch.load keeps its weights_only default after import amfir_mm
    with pytest.raises(pickle.UnpicklingError, match='HistoryBuffer'):
        torch.load(tmp_path / 'iter_2.pth')


class _WritesFile:
    """Unpickling this calls ``Path(marker).write_text('pwned')``."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return Path.write_text, (Path(self.marker), 'pwned')


class _WritesFileViaNumpy:
    """Unpickling this calls ``numpy.ndarray.tofile(array, marker)``; pickle
    writes the method as ``builtins.getattr(numpy.ndarray, 'tofile')``, all
    of whose names an MMEngine checkpoint also uses."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return np.ndarray.tofile, (np.arange(3.0), str(self.marker))


@pytest.mark.parametrize('payload,refusal', [
    (_WritesFile, 'pathlib'),
    (_WritesFileViaNumpy, 'refusing getattr'),
])
def test_checkpoint_that_runs_code_is_refused(tmp_path, payload, refusal):
    marker = tmp_path / 'pwned.txt'
    path = tmp_path / 'evil.pth'
    # a checkpoint like MMEngine's, plus the payload
    torch.save(
        dict(
            meta=dict(iter=2),
            state_dict=LineModel().state_dict(),
            message_hub=dict(log_scalars=dict(loss=HistoryBuffer([1.0], [1]))),
            extra=payload(marker)), path)
    for load in (lambda: CheckpointLoader.load_checkpoint(str(path)),
                 lambda: load_checkpoint(LineModel(), str(path))):
        with pytest.raises(pickle.UnpicklingError) as info:
            load()
        assert str(path) in str(info.value)  # names the file
        assert refusal in str(info.value)
        assert not marker.exists()
    # the payload is real: an unsafe load would have run it
    torch.load(path, weights_only=False)
    assert marker.exists()


def test_narrowed_getattr():
    assert compat._history_buffer_getattr(HistoryBuffer,
                                          'mean') is HistoryBuffer.mean
    for obj, name in [(HistoryBuffer, '__init__'), (HistoryBuffer, 'update'),
                      (np.ndarray, 'tofile'), (os, 'system')]:
        with pytest.raises(pickle.UnpicklingError, match='refusing getattr'):
            compat._history_buffer_getattr(obj, name)


@pytest.fixture
def served(tmp_path, monkeypatch):
    """``(folder, url_of)``: files put in ``folder`` are served over HTTP on
    localhost; torch's hub cache is in ``tmp_path``."""
    folder = tmp_path / 'served'
    folder.mkdir()
    monkeypatch.setenv('TORCH_HOME', str(tmp_path / 'torch_home'))
    handler = functools.partial(
        http.server.SimpleHTTPRequestHandler, directory=str(folder))
    handler.log_message = lambda *args: None
    server = http.server.ThreadingHTTPServer(('127.0.0.1', 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield folder, lambda name: f'http://127.0.0.1:{server.server_port}/{name}'
    server.shutdown()
    thread.join()


def test_url_loader_is_the_safe_one():
    from mmengine.runner import checkpoint
    assert 'mmengine_safe_url_checkpoints' in compat.applied()
    assert checkpoint.load_url is compat.load_url_safely
    # torch's own function is not changed for anyone else
    assert torch.hub.load_state_dict_from_url.__module__ == 'torch.hub'


def test_url_checkpoint_loads(tmp_path, served):
    """A real Runner's checkpoint (HistoryBuffer logs, numpy values),
    downloaded over HTTP, loads through load_checkpoint and the loader."""
    folder, url_of = served
    runner = _runner(tmp_path / 'run', interrupt_after=2)
    with pytest.raises(_Interrupted):
        runner.train()
    (folder / 'iter_2.pth').write_bytes(
        (tmp_path / 'run' / 'iter_2.pth').read_bytes())
    model = LineModel()
    nn.init.zeros_(model.fc.weight)
    load_checkpoint(model, url_of('iter_2.pth'), map_location='cpu')
    torch.testing.assert_close(model.fc.weight, runner.model.fc.weight)
    loaded = CheckpointLoader.load_checkpoint(url_of('iter_2.pth'))
    assert isinstance(loaded['message_hub']['log_scalars']['train/loss'],
                      HistoryBuffer)
    assert (tmp_path / 'torch_home/hub/checkpoints/iter_2.pth').is_file()


@pytest.mark.parametrize('payload,refusal', [
    (_WritesFile, 'pathlib'),
    (_WritesFileViaNumpy, 'refusing getattr'),
])
def test_url_checkpoint_that_runs_code_is_refused(tmp_path, served, payload,
                                                  refusal):
    folder, url_of = served
    marker = tmp_path / 'pwned.txt'
    torch.save(
        dict(state_dict=LineModel().state_dict(), extra=payload(marker)),
        folder / 'evil.pth')
    url = url_of('evil.pth')
    for load in (lambda: CheckpointLoader.load_checkpoint(url),
                 lambda: load_checkpoint(LineModel(), url)):
        with pytest.raises(pickle.UnpicklingError) as info:
            load()
        assert url in str(info.value) and 'evil.pth' in str(info.value)
        assert refusal in str(info.value)
        assert not marker.exists()
    # the payload is real: torch.hub's default load (weights_only=False),
    # which MMEngine called, runs it
    torch.hub.load_state_dict_from_url(url)
    assert marker.exists()
