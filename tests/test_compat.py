"""The three stack breakages of ../shared/STACK.md stay fixed."""
import sys

import pytest
import torch
import torch.nn as nn
from mmengine.model import BaseModel
from mmengine.runner import Runner
from torch.utils.data import Dataset

from amfir_mm import compat


def test_mmaction_models_import_and_drn_stub_explains():
    import mmaction.models  # noqa: F401 - failed before the fix
    from mmaction.models.localizers import DRN
    with pytest.raises(ImportError, match='mmaction2#2714'):
        DRN()


def test_patch_is_idempotent():
    assert compat.patch_mmaction_drn() is False  # already applied


class _Points(Dataset):

    def __len__(self):
        return 16

    def __getitem__(self, idx):
        x = torch.tensor([idx / 16.0])
        return dict(inputs=x, target=2 * x)


class _Line(BaseModel):

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(1, 1)

    def forward(self, inputs, target=None, mode='tensor'):
        inputs, target = torch.stack(inputs), torch.stack(target)
        out = self.fc(inputs)
        if mode == 'loss':
            return dict(loss=((out - target)**2).mean())
        return out


def _runner(work_dir, max_iters, resume):
    return Runner(
        model=_Line(),
        work_dir=str(work_dir),
        train_dataloader=dict(
            dataset=_Points(), sampler=dict(type='InfiniteSampler'),
            batch_size=4, num_workers=0),
        optim_wrapper=dict(optimizer=dict(type='SGD', lr=0.1)),
        train_cfg=dict(by_epoch=False, max_iters=max_iters),
        default_hooks=dict(checkpoint=dict(
            type='CheckpointHook', interval=2, by_epoch=False)),
        resume=resume,
        default_scope='mmaction',
        experiment_name=f'resume_{max_iters}_{resume}')


def test_resume_from_checkpoint_with_weights_only_default(tmp_path):
    """torch >= 2.6 loads with weights_only=True: resume must still work."""
    first = _runner(tmp_path, 2, resume=False)
    first.train()
    saved = {k: v.clone() for k, v in first.model.state_dict().items()}
    # the breakage is real: torch's safe default cannot read the file ...
    with pytest.raises(Exception, match='Unsupported global'):
        torch.load(tmp_path / 'iter_2.pth', weights_only=True)
    # ... yet MMEngine resumes from it
    second = _runner(tmp_path, 4, resume=True)
    second.train()
    assert second.iter == 4
    # it started from the saved weights, not from scratch: the iteration
    # count came back, and the model moved on from the iter-2 weights
    assert not torch.equal(second.model.fc.weight, saved['fc.weight'])
    history = second.message_hub.get_scalar('train/loss')
    assert len(history.data[0]) == 4  # log history of iters 1-2 restored


def test_safe_loading_still_rejects_unknown_globals(tmp_path):
    path = tmp_path / 'evil.pth'
    torch.save(dict(obj=_Points()), path)
    with pytest.raises(Exception, match='Unsupported global|weights_only'):
        torch.load(path, weights_only=True)


def test_mmflow_imports_under_mmcv_lite_and_raft_builds():
    mmflow_models = compat.import_mmflow_models()
    assert 'mmcv.ops' not in sys.modules or hasattr(
        sys.modules['mmcv.ops'], '__file__'), 'the stub must not leak'
    from mmengine.registry import DefaultScope
    from mmflow.registry import MODELS as FLOW_MODELS
    assert mmflow_models is not None
    with DefaultScope.overwrite_default_scope('mmflow'):
        assert FLOW_MODELS.get('RAFT') is not None


def test_compiled_op_models_fail_clearly():
    compat.import_mmflow_models()
    from mmflow.models import builder
    with pytest.raises(compat.MissingCompiledOpError, match='mmcv-lite'):
        builder.Correlation()


def _fake_transformers_5(root):
    """A ``transformers`` 5.0.0 install that cannot serve MMAction2's VindLU:
    importing anything from it raises the ImportError the real 5.x gives
    (``modeling_utils.apply_chunking_to_forward`` is gone)."""
    pkg = root / 'transformers'
    pkg.mkdir()
    (pkg / '__init__.py').write_text(
        'raise ImportError("cannot import name \'apply_chunking_to_forward\' '
        'from \'transformers.modeling_utils\'")\n')
    info = root / 'transformers-5.0.0.dist-info'
    info.mkdir()
    (info / 'METADATA').write_text(
        'Metadata-Version: 2.1\nName: transformers\nVersion: 5.0.0\n')
    return str(root)


def test_transformers_version_rule():
    assert compat.transformers_breaks_vindlu('5.17.0')
    assert compat.transformers_breaks_vindlu('5.0.0rc1')
    assert not compat.transformers_breaks_vindlu('4.57.1')
    assert not compat.transformers_breaks_vindlu('dev')


def test_mmaction_models_import_beside_transformers_5(tmp_path):
    import os
    import subprocess
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [_fake_transformers_5(tmp_path)] + sys.path))
    # the other fixes only (compat.py loaded alone, not through amfir_mm)
    broken = subprocess.run([
        sys.executable, '-c',
        'import importlib.util as u\n'
        f's = u.spec_from_file_location("c", {compat.__file__!r})\n'
        'c = u.module_from_spec(s); s.loader.exec_module(c)\n'
        'c.patch_mmaction_drn()\n'
        'import mmaction.models\n'
    ], env=env, capture_output=True, text=True)
    assert broken.returncode != 0
    assert 'apply_chunking_to_forward' in broken.stderr  # what is avoided
    fixed = subprocess.run([
        sys.executable, '-c',
        'import amfir_mm, mmaction.models\n'
        'from mmaction.registry import MODELS\n'
        'try:\n'
        '    MODELS.build(dict(type="VindLURetrieval"))\n'
        'except ImportError as e:\n'
        '    print("placeholder:", e)\n'
    ], env=env, capture_output=True, text=True)
    assert fixed.returncode == 0, fixed.stderr[-2000:]
    assert 'placeholder:' in fixed.stdout
