"""The stack fixes of ``amfir_mm.compat``: each fixes its breakage, is
applied only under its guard, is listed by ``compat.applied()`` and is
idempotent. (The checkpoint allow-list: ``tests/test_checkpoint_safety.py``.)
"""
import os
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import torch
from mmengine.runner.checkpoint import CheckpointLoader

from amfir_mm import compat

RAFT_CONFIG = 'mmflow::raft/raft_8xb2_100k_mixed-368x768.py'


@pytest.fixture
def fresh_compat(monkeypatch):
    """``compat`` with an empty record of applied fixes (restored after)."""
    monkeypatch.setattr(compat, '_ACTIVE', {})
    return compat


def _versions(monkeypatch, **overrides):
    """Make ``compat`` see other installed versions (``torch='2.5.1'``; None:
    not installed)."""
    real = compat._version

    def version(dist):
        key = dist.replace('-', '_')
        return overrides[key] if key in overrides else real(dist)

    monkeypatch.setattr(compat, '_version', version)


# ------------------------------------------------------------------ applied


def test_applied_lists_the_fixes_this_stack_needs():
    active = compat.applied()
    assert {'mmaction_drn_stub',
            'mmengine_checkpoint_allowlist'} <= set(active)
    if not torch.cuda.is_available():
        assert 'mmengine_cpu_pytorch_launcher' in active
    # transformers is not part of the pinned stack: VindLU is left alone
    assert 'mmaction_vindlu_placeholders' not in active
    for name, reason in active.items():
        assert isinstance(reason, str) and '\n' not in reason and reason
    assert 'mmaction2 1.2.0' in active['mmaction_drn_stub']
    assert 'torch 2.' in active['mmengine_checkpoint_allowlist']
    active.clear()  # a copy: the record itself is unchanged
    assert compat.applied()


def test_apply_all_is_idempotent():
    from mmengine.dist import utils as dist_utils
    from mmengine.model import MMDistributedDataParallel
    before = (sys.modules[compat._DRN_MODULE], CheckpointLoader._schemes[''],
              dist_utils._init_dist_pytorch,
              MMDistributedDataParallel.__init__, compat.applied())
    compat.apply_all()
    compat.apply_all()
    after = (sys.modules[compat._DRN_MODULE], CheckpointLoader._schemes[''],
             dist_utils._init_dist_pytorch, MMDistributedDataParallel.__init__,
             compat.applied())
    for old, new in zip(before, after):
        assert new is old or new == old
    assert after[1] is compat.load_from_local_safely
    # one local scheme, registered once
    assert list(CheckpointLoader._schemes).count('') == 1


# -------------------------------------------------------------- DRN stub


def test_mmaction_models_import_and_drn_stub_explains():
    import mmaction.models  # noqa: F401 - failed before the fix
    from mmaction.models.localizers import DRN
    with pytest.raises(ImportError, match='mmaction2#2714'):
        DRN()


def _fake_mmaction(root: Path, imports_drn: bool, has_drn: bool):
    localizers = root / 'mmaction' / 'models' / 'localizers'
    localizers.mkdir(parents=True)
    (localizers / '__init__.py'
     ).write_text('from .bmn import BMN\n' +
                  ('from .drn.drn import DRN\n' if imports_drn else ''))
    if has_drn:
        (localizers / 'drn').mkdir()
    return types.SimpleNamespace(
        submodule_search_locations=[str(root / 'mmaction')])


@pytest.mark.parametrize(
    'imports_drn,has_drn,needed',
    [
        (True, False, True),  # the 1.2.0 wheel
        (True, True, False),  # a source install
        (False, False, False),  # a release that dropped DRN
    ])
def test_drn_stub_guard(tmp_path, monkeypatch, fresh_compat, imports_drn,
                        has_drn, needed):
    spec = _fake_mmaction(tmp_path, imports_drn, has_drn)
    monkeypatch.setattr(compat.importlib.util, 'find_spec', lambda name: spec)
    monkeypatch.delitem(sys.modules, compat._DRN_MODULE)
    monkeypatch.delitem(sys.modules, compat._DRN_MODULE + '.drn')
    assert compat._mmaction_lacks_drn() is needed
    assert compat.patch_mmaction_drn() is needed
    assert (compat._DRN_MODULE in sys.modules) is needed
    assert ('mmaction_drn_stub' in compat.applied()) is needed


# ------------------------------------------------- checkpoint allow-list


@pytest.mark.parametrize(
    'versions,applies',
    [
        (dict(), True),  # the pinned stack
        (dict(torch='2.6.0'), True),
        (dict(torch='2.6.0a0+git1234'), True),  # a 2.6 nightly: same default
        (dict(torch='2.5.1'), False),  # weights_only=False by default
        (dict(mmengine='0.11.0'), False),
        (dict(torch=None), False),
    ])
def test_checkpoint_allowlist_guard(monkeypatch, fresh_compat, versions,
                                    applies):
    from mmengine.runner.checkpoint import load_from_local
    monkeypatch.setitem(CheckpointLoader._schemes, '', load_from_local)
    _versions(monkeypatch, **versions)
    assert compat.allow_mmengine_checkpoint_globals() is applies
    expected = compat.load_from_local_safely if applies else load_from_local
    assert CheckpointLoader._schemes[''] is expected
    assert ('mmengine_checkpoint_allowlist' in compat.applied()) is applies


def test_checkpoint_globals_are_exactly_the_listed_kinds():
    from mmengine.logging import HistoryBuffer
    entries = compat.mmengine_checkpoint_globals()
    named = {
        name: obj
        for obj, name in (e for e in entries if isinstance(e, tuple))
    }
    assert named['mmengine.logging.history_buffer.HistoryBuffer'] is \
        HistoryBuffer
    # getattr only in its narrowed form, never the builtin
    assert named['builtins.getattr'] is compat._history_buffer_getattr
    assert getattr not in entries and getattr not in named.values()
    dtype_classes = [e for e in entries if not isinstance(e, tuple)]
    assert all(issubclass(c, np.dtype) for c in dtype_classes)
    assert type(np.dtype(object)) not in dtype_classes


# ---------------------------------------------------- CPU launcher patch


@pytest.mark.skipif(torch.cuda.is_available(), reason='CPU-only torch')
@pytest.mark.parametrize('mmengine,applies', [('0.10.7', True),
                                              ('0.10.0', True),
                                              ('0.11.0', False)])
def test_cpu_launcher_guard(monkeypatch, fresh_compat, mmengine, applies):
    from mmengine.dist import utils as dist_utils
    from mmengine.model import MMDistributedDataParallel

    def unpatched(backend, init_backend='torch', **kwargs):
        raise AssertionError('stands in for MMEngine\'s launcher')

    def ddp_init(self, module, detect_anomalous_params=False, **kwargs):
        pass

    monkeypatch.setattr(dist_utils, '_init_dist_pytorch', unpatched)
    monkeypatch.setattr(MMDistributedDataParallel, '__init__', ddp_init)
    _versions(monkeypatch, mmengine=mmengine)
    assert compat.allow_cpu_pytorch_launcher() is applies
    assert (dist_utils._init_dist_pytorch is not unpatched) is applies
    assert (MMDistributedDataParallel.__init__ is not ddp_init) is applies
    assert ('mmengine_cpu_pytorch_launcher' in compat.applied()) is applies


# ------------------------------------------------------------ VindLU

_STAND_IN = '''
MISSING = {missing!r}


class _Meta(type):

    def __getattr__(cls, name):
        if name.startswith('__'):
            raise AttributeError(name)
        return _Meta(name, (_Any, ), {{}})

    def __getitem__(cls, key):
        return _Any


class _Any(metaclass=_Meta):
    """Any class, decorator, function or value a module-level import uses."""

    def __init__(self, *args, **kwargs):
        pass

    def __call__(self, *args, **kwargs):
        return args[0] if len(args) == 1 and callable(args[0]) else self

    def __getattr__(self, name):
        if name.startswith('__'):
            raise AttributeError(name)
        return _Any()


def __getattr__(name):
    if name.startswith('__') or name in MISSING:
        raise AttributeError(name)
    return _Meta(name, (_Any, ), {{}})
'''

_TRANSFORMERS_MODULES = ('activations', 'configuration_utils', 'file_utils',
                         'modeling_outputs', 'modeling_utils', 'pytorch_utils',
                         'models', 'models.beit', 'models.beit.modeling_beit',
                         'logging')
# what transformers 5.x no longer has in modeling_utils (checked on 5.0.0
# and 5.23.0)
_GONE_IN_5 = ('apply_chunking_to_forward', 'find_pruneable_heads_and_indices',
              'prune_linear_layer')


def _stand_in(root: Path, name: str, version: str, modules=(), missing=None):
    """An installed package ``name`` (dist-info ``version``) whose modules
    provide every name MMAction2's VindLU imports at module level, except
    the ``missing`` ones (``{module: names}``)."""
    missing = missing or {}
    for module in (name, ) + tuple(f'{name}.{m}' for m in modules):
        folder = root.joinpath(*module.split('.'))
        folder.mkdir(parents=True, exist_ok=True)
        (folder / '__init__.py').write_text(
            _STAND_IN.format(missing=sorted(missing.get(module, ()))))
    info = root / f'{name}-{version}.dist-info'
    info.mkdir()
    (info / 'METADATA'
     ).write_text(f'Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n')


def _site(tmp_path, transformers, timm):
    """A folder for PYTHONPATH with stand-in transformers / timm."""
    missing = {
        'transformers.modeling_utils': _GONE_IN_5
    } if transformers.startswith('5') else {}
    _stand_in(tmp_path, 'transformers', transformers, _TRANSFORMERS_MODULES,
              missing)
    if timm:
        _stand_in(tmp_path, 'timm', '1.0.9', ('models', 'models.layers'))
    return str(tmp_path)


def _run(site, code):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([site] + sys.path))
    return subprocess.run([sys.executable, '-c', code],
                          env=env,
                          capture_output=True,
                          text=True,
                          cwd=site)


_WITHOUT_FIX = (
    'import importlib.util as u\n'
    f's = u.spec_from_file_location("c", {compat.__file__!r})\n'
    'c = u.module_from_spec(s); s.loader.exec_module(c)\n'
    'c.patch_mmaction_drn()  # the other fix, which this import needs\n'
    'import mmaction.models\n')

_WITH_FIX = (
    'import amfir_mm, mmaction.models\n'
    'from mmaction.registry import MODELS\n'
    'print("applied:", sorted(amfir_mm.compat.applied()))\n'
    'print("module:", MODELS.get("VindLURetrieval").__module__)\n'
    'try:\n'
    '    MODELS.build(dict(type="VindLURetrieval"))\n'
    'except ImportError as e:\n'
    '    print("placeholder:", e)\n'
    'except TypeError as e:  # the real class, built without arguments\n'
    '    print("real:", e)\n')


@pytest.mark.slow
@pytest.mark.parametrize('transformers,timm,error', [
    ('5.0.0', True, "cannot import name 'apply_chunking_to_forward'"),
    ('4.40.0', False, "No module named 'timm'"),
])
def test_stand_ins_reproduce_the_vindlu_breakages(tmp_path, transformers, timm,
                                                  error):
    """Without the fix, ``import mmaction.models`` fails beside them exactly
    as beside the real transformers 5.x / without timm."""
    broken = _run(_site(tmp_path, transformers, timm), _WITHOUT_FIX)
    assert broken.returncode != 0
    assert error in broken.stderr


@pytest.mark.slow
@pytest.mark.parametrize('transformers,timm,says', [
    ('5.0.0', True, "transformers < 5 (installed: 5.0.0)"),
    ('4.40.0', False, 'VindLU imports timm, which is not installed'),
])
def test_vindlu_placeholders_where_it_cannot_import(tmp_path, transformers,
                                                    timm, says):
    fixed = _run(_site(tmp_path, transformers, timm), _WITH_FIX)
    assert fixed.returncode == 0, fixed.stderr[-2000:]
    assert 'mmaction_vindlu_placeholders' in fixed.stdout
    assert 'placeholder: VindLURetrieval is unavailable' in fixed.stdout
    assert says in fixed.stdout


@pytest.mark.slow
def test_vindlu_left_alone_where_it_works(tmp_path):
    ok = _run(_site(tmp_path, '4.40.0', timm=True), _WITH_FIX)
    assert ok.returncode == 0, ok.stderr[-2000:]
    assert 'mmaction_vindlu_placeholders' not in ok.stdout
    assert 'module: mmaction.models.multimodal.vindlu' in ok.stdout
    assert 'real:' in ok.stdout


@pytest.mark.parametrize(
    'versions,timm,reason',
    [
        (dict(transformers='5.17.0'), True, 'transformers < 5'),
        (dict(transformers='5.0.0rc1'), True, 'transformers < 5'),
        (dict(transformers='4.57.1'), False, 'timm'),
        (dict(transformers='4.57.1'), True, None),
        (dict(transformers='4.20.0'), False, None),  # MMAction2 skips VindLU
        (dict(transformers=None), False, None),
        (dict(transformers='dev'), False, None),
        (dict(transformers='5.0.0', mmaction2='1.3.0'), True, None),
    ])
def test_vindlu_guard(monkeypatch, versions, timm, reason):
    _versions(monkeypatch, **versions)
    real_find_spec = compat.importlib.util.find_spec
    monkeypatch.setattr(
        compat.importlib.util, 'find_spec', lambda name:
        ((object() if timm else None)
         if name == 'timm' else real_find_spec(name)))
    found = compat._vindlu_unavailable_reason()
    if reason is None:
        assert found is None
    else:
        assert reason in found


# ------------------------------------------------------------ MMFlow


@pytest.fixture(scope='module')
def raft():
    """RAFT from MMFlow's own config, random weights, 2 iterations."""
    compat.import_mmflow_models()
    from mmengine.hub import get_config
    from mmengine.registry import DefaultScope
    from mmflow.registry import MODELS as FLOW_MODELS
    cfg = get_config(RAFT_CONFIG).model
    cfg.train_cfg = None
    cfg.decoder.iters = 2
    with DefaultScope.overwrite_default_scope('mmflow'):
        return FLOW_MODELS.build(cfg).eval()


def test_mmflow_imports_under_mmcv_lite_and_raft_builds_and_runs(raft):
    assert 'mmcv.ops' not in sys.modules or hasattr(
        sys.modules['mmcv.ops'], '__file__'), 'the stub must not leak'
    assert 'mmflow_mmcv_ops_stand_in' in compat.applied()
    pair = torch.rand(2, 6, 64, 64) * 255  # two (RGB, RGB) pairs
    with torch.no_grad():
        flows = raft(pair, mode='tensor')
    assert len(flows) == 2  # one estimate per refinement iteration
    assert flows[-1].shape == (2, 2, 64, 64)
    assert torch.isfinite(flows[-1]).all()


def test_compiled_op_models_fail_clearly():
    compat.import_mmflow_models()
    from mmflow.models import builder
    with pytest.raises(compat.MissingCompiledOpError, match='mmcv-lite'):
        builder.Correlation()


def _decoder_results(raft):
    from mmflow.models.decoders.base_decoder import BaseDecoder
    from mmflow.structures import FlowDataSample
    decoder = next(m for m in raft.modules() if isinstance(m, BaseDecoder))
    flows = [dict(flow_fw=torch.full((2, 8, 8), float(i))) for i in (1, 2)]
    samples = [
        FlowDataSample(metainfo=dict(ori_shape=(8, 8), pad=[[0, 0], [0, 0]]))
        for _ in flows
    ]
    return decoder, flows, samples


def test_mmflow_batched_postprocess_fix(raft, monkeypatch):
    decoder, flows, samples = _decoder_results(raft)
    monkeypatch.setattr(decoder, 'postprocess_result',
                        decoder.postprocess_result)  # restored after
    # the breakage: only the first sample gets its flow
    out = decoder.postprocess_result(flows, samples)
    assert 'pred_flow_fw' in out[0] and 'pred_flow_fw' not in out[1]

    decoder, flows, samples = _decoder_results(raft)
    assert compat.fix_mmflow_batched_postprocess(raft) == 1
    assert compat.fix_mmflow_batched_postprocess(raft) == 0  # idempotent
    assert 'mmflow_batched_postprocess' in compat.applied()
    out = decoder.postprocess_result(flows, samples)
    assert [float(s.pred_flow_fw.data.mean()) for s in out] == [1.0, 2.0]


def test_mmflow_batched_postprocess_guard(raft, monkeypatch, fresh_compat):
    decoder, _, _ = _decoder_results(raft)
    monkeypatch.setattr(decoder, 'postprocess_result',
                        decoder.postprocess_result)
    _versions(monkeypatch, mmflow='1.1.0')
    assert compat.fix_mmflow_batched_postprocess(raft) == 0
    assert compat.applied() == {}


# ------------------------------------------------- user-facing messages


def test_no_user_facing_text_points_at_developer_notes():
    """``STACK.md`` lives in the developers' ../shared, not in the project:
    messages and docstrings point at the README's "Why these pins"."""
    root = Path(__file__).resolve().parents[1]
    offenders = [
        str(path.relative_to(root))
        for folder in ('amfir_mm', 'tools', 'configs')
        for path in (root / folder).rglob('*')
        if path.suffix in ('.py', '.sh') and 'STACK.md' in path.read_text()
    ]
    assert offenders == []


def test_tvl1_without_contrib_says_how_to_repair(monkeypatch):
    import cv2

    from amfir_mm.flow import TVL1FlowEstimator
    monkeypatch.delattr(cv2, 'optflow', raising=False)
    with pytest.raises(ImportError, match='opencv-contrib-python') as info:
        TVL1FlowEstimator()
    assert 'Why these pins' in str(info.value)
    assert 'README.md' in str(info.value)
