"""Explicit, version-guarded fixes for known breakages of the pinned stack.

Every work-around for third-party code lives here and is covered by
``tests/test_compat.py`` (the checkpoint allow-list also by
``tests/test_checkpoint_safety.py``). Each one is guarded: it is applied only
where the installed versions (or the installed files) have the breakage,
changes no more than the breakage needs, and is idempotent. The README's
"Why these pins" section gives the context of the pins.

**Which fixes are active** in this process::

    python -c "import amfir_mm; print(amfir_mm.compat.applied())"

:func:`applied` maps each active fix's name to a one-line reason. The first
five are applied by ``import amfir_mm`` (:func:`apply_all`); the MMFlow ones
when MMFlow is used.

``mmaction_drn_stub`` (:func:`patch_mmaction_drn`)
    The ``mmaction2==1.2.0`` wheel misses ``mmaction.models.localizers.drn``
    (open-mmlab/mmaction2#2714) although ``localizers/__init__.py`` imports
    it, so ``import mmaction.models`` raises ``ModuleNotFoundError``. Guard:
    exactly that (the package imports ``.drn`` and its folder is missing; a
    source install has it). Fix: a stub package whose ``DRN`` fails loudly
    when built. Nothing else in MMAction2 uses it.
``mmengine_checkpoint_allowlist`` (:func:`allow_mmengine_checkpoint_globals`)
    torch >= 2.6 loads with ``weights_only=True``; MMEngine (<= 0.10.x)
    checkpoints pickle a few non-tensor objects, so resume and ``load_from``
    raise ``UnpicklingError: Unsupported global``. Guard: torch >= 2.6 and
    mmengine < 0.11. Fix: MMEngine's local-file loader scheme loads with
    torch's own ``weights_only`` unpickler (explicitly ``weights_only=True``)
    inside ``torch.serialization.safe_globals(...)`` listing exactly what an
    MMEngine checkpoint holds (:func:`mmengine_checkpoint_globals`). An
    untrusted pickle is still refused; ``torch.load`` elsewhere is untouched.
``mmengine_safe_url_checkpoints`` (:func:`safe_url_checkpoints`)
    MMEngine (<= 0.10.x) loads ``http(s)://`` checkpoints (``load_from``,
    ``Pretrained`` init, ``load_checkpoint``; ``torchvision://`` and
    ``open-mmlab://`` URLs too) with ``torch.hub.load_state_dict_from_url``,
    whose ``weights_only`` is False by default, so a downloaded checkpoint
    could run code when loaded. Guard: mmengine < 0.11 calling that
    function. Fix: it loads with ``weights_only=True`` and the allow-list
    above (:func:`load_url_safely`).
``mmengine_cpu_pytorch_launcher`` (:func:`allow_cpu_pytorch_launcher`)
    MMEngine's ``pytorch`` launcher calls ``torch.cuda.set_device``
    unconditionally and its DDP wrapper passes ``device_ids``; both fail on
    a CPU-only torch, so ``tools/dist_train.sh`` could not run there. Guard:
    no CUDA and mmengine < 0.11. Fix: without CUDA the process group is
    initialised directly (gloo, with a warning, where nccl was asked for) and
    ``device_ids`` is dropped when wrapping.
``mmaction_vindlu_placeholders`` (:func:`guard_mmaction_vindlu`)
    Where ``transformers`` (>= 4.28) is installed, ``import mmaction.models``
    (mmaction2 <= 1.2.0) imports its VindLU models, the only multimodal
    models of MMAction2, and fails in two cases: with transformers >= 5
    (VindLU imports ``apply_chunking_to_forward``, ``prune_linear_layer``
    and ``find_pruneable_heads_and_indices`` from
    ``transformers.modeling_utils``; 5.x has none of them there, and even
    with them supplied VindLU's BERT cannot be built on transformers 5.x:
    ``PreTrainedModel.post_init`` needs ``all_tied_weights_keys``, and
    ``get_head_mask`` / ``invert_attention_mask`` are gone), and without
    ``timm`` (VindLU imports it; MMAction2's dependency check forgets it).
    Guard: exactly those cases. Fix: MMAction2 takes its own "multimodal
    dependencies missing" path, and the three VindLU names are registered as
    placeholders that say which of the two reasons applies. Everything else
    in MMAction2 is untouched.
``mmflow_mmcv_ops_stand_in`` (:func:`import_mmflow_models`)
    MMFlow 1.0.0rc0 imports ``mmcv.ops`` (``Correlation``, ``DeformConv2d``)
    at import time; ``mmcv-lite`` has no compiled ``mmcv._ext``. Guard: no
    importable ``mmcv.ops`` and mmflow <= 1.0.0. Fix: while MMFlow's model
    package is imported, a stand-in ``mmcv.ops`` whose classes raise
    :class:`MissingCompiledOpError` when built (PWC-Net, FlowNetC,
    LiteFlowNet, MaskFlowNet); RAFT is pure PyTorch and works. The stand-in
    is removed from ``sys.modules`` afterwards.
``mmflow_batched_postprocess`` (:func:`fix_mmflow_batched_postprocess`)
    mmflow 1.0.0rc0's ``BaseDecoder.postprocess_result`` returns inside its
    loop, so only the first sample of a batch gets its flow. Guard: mmflow
    <= 1.0.0. Fix: the decoders of the given model *instance* post-process
    one sample at a time; MMFlow's classes are left untouched.
"""
import importlib
import importlib.util
import os
import pickle
import sys
import types
import warnings
from contextlib import contextmanager, nullcontext
from typing import Dict, List, Optional, Tuple

_DRN_MODULE = 'mmaction.models.localizers.drn'
_VINDLU_MODELS = ('VindLUVQA', 'VindLURetrievalMC', 'VindLURetrieval')

_ACTIVE: Dict[str, str] = {}


def applied() -> Dict[str, str]:
    """The fixes active in this process.

    Returns:
        dict[str, str]: fix name -> one-line reason (which breakage, for
        which installed versions). Empty where none was needed.
    """
    return dict(_ACTIVE)


def _version(dist: str) -> Optional[str]:
    """Installed version of the distribution ``dist``, None if absent."""
    from importlib import metadata
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def _release(dist: str) -> Optional[Tuple[int, int, int]]:
    """``(major, minor, patch)`` of an installed distribution (pre-release
    and local tags ignored: '2.6.0a0+git' -> (2, 6, 0)); None if absent or
    unparsable."""
    version = _version(dist)
    if version is None:
        return None
    from mmengine.utils import digit_version
    try:
        return tuple(digit_version(version)[:3])
    except Exception:  # not a PEP 440 version (e.g. 'dev')
        return None


class MissingCompiledOpError(RuntimeError):
    """An MMCV op needs the compiled ``mmcv`` (not ``mmcv-lite``)."""


def _missing_op(name: str, why: str) -> type:

    class _MissingOp:

        def __init__(self, *args, **kwargs):
            raise MissingCompiledOpError(
                f'{name} needs the compiled `mmcv` package ({why}); this '
                'environment has `mmcv-lite`. Use RAFT (pure PyTorch) or '
                'install full mmcv with CUDA ops.')

    _MissingOp.__name__ = name
    return _MissingOp


# --------------------------------------------------------------------------
# mmaction_drn_stub


def _mmaction_lacks_drn() -> bool:
    """Whether the installed mmaction2 imports ``localizers.drn`` but lacks
    it, found without importing ``mmaction.models`` (whose ``__init__`` is
    what fails)."""
    spec = importlib.util.find_spec('mmaction')
    if spec is None:
        raise ModuleNotFoundError('amfir-mm needs mmaction2 (pip install '
                                  'mmaction2==1.2.0)')
    for root in spec.submodule_search_locations:
        localizers = os.path.join(root, 'models', 'localizers')
        if os.path.isdir(os.path.join(localizers, 'drn')):
            return False
        init = os.path.join(localizers, '__init__.py')
        if os.path.isfile(init):
            with open(init, encoding='utf-8') as f:
                return 'from .drn' in f.read()
    return False


def patch_mmaction_drn() -> bool:
    """Insert a stub for the module missing from the mmaction2 1.2.0 wheel.

    Returns:
        bool: True if the stub is in place (inserted now or before), False if
        the installed mmaction2 does not need it.
    """
    if 'mmaction_drn_stub' in _ACTIVE:
        return True
    if _DRN_MODULE in sys.modules or not _mmaction_lacks_drn():
        return False
    pkg = types.ModuleType(_DRN_MODULE)
    pkg.__path__ = []  # a package, so ``.drn.drn`` can be imported
    sub = types.ModuleType(_DRN_MODULE + '.drn')

    class DRN:  # noqa: D401 - placeholder with the upstream name
        """Placeholder: the DRN localizer is missing from mmaction2 1.2.0."""

        def __init__(self, *args, **kwargs):
            raise ImportError(
                'DRN is not shipped in the mmaction2 1.2.0 wheel '
                '(open-mmlab/mmaction2#2714); amfir-mm stubs it so that '
                '`import mmaction.models` works. Install mmaction2 from '
                'source to use DRN.')

    sub.DRN = DRN
    pkg.drn = sub
    sys.modules[_DRN_MODULE] = pkg
    sys.modules[_DRN_MODULE + '.drn'] = sub
    _ACTIVE['mmaction_drn_stub'] = (
        f'mmaction2 {_version("mmaction2")} lacks {_DRN_MODULE} '
        '(open-mmlab/mmaction2#2714): stubbed')
    return True


# --------------------------------------------------------------------------
# mmaction_vindlu_placeholders


def _vindlu_unavailable_reason() -> Optional[str]:
    """Why MMAction2's VindLU models cannot be imported here, or None."""
    mmaction = _release('mmaction2')
    if mmaction is None or mmaction > (1, 2, 0):
        return None
    transformers = _version('transformers')
    release = _release('transformers')
    if transformers is None or release is None or release < (4, 28, 0):
        return None  # MMAction2 itself skips VindLU (its requirement)
    if release >= (5, 0, 0):
        return (f'mmaction2 {_version("mmaction2")} VindLU needs '
                f'transformers < 5 (installed: {transformers}): it imports '
                'helpers transformers 5 removed from '
                'transformers.modeling_utils and its BERT cannot be built '
                "on 5.x; pip install 'transformers>=4.28,<5'")
    if importlib.util.find_spec('timm') is None:
        return (f'mmaction2 {_version("mmaction2")} VindLU imports timm, '
                'which is not installed (MMAction2 checks only for '
                'transformers); pip install timm')
    return None


def guard_mmaction_vindlu() -> bool:
    """Keep ``import mmaction.models`` working where VindLU cannot import.

    Must run before ``mmaction.models`` is imported; it then imports it.

    Returns:
        bool: True if VindLU was switched to placeholders (now or before).
    """
    if 'mmaction_vindlu_placeholders' in _ACTIVE:
        return True
    if 'mmaction.models.multimodal' in sys.modules:
        return False  # already imported (it worked, or it is too late)
    reason = _vindlu_unavailable_reason()
    if reason is None:
        return False
    from mmaction.utils import dependency
    dependency.WITH_MULTIMODAL = False  # read by mmaction.models.multimodal
    importlib.import_module('mmaction.models.multimodal')
    from mmaction.registry import MODELS
    for name in _VINDLU_MODELS:

        def unavailable(*args, _name=name, **kwargs):
            raise ImportError(f'{_name} is unavailable: {reason}')

        unavailable.__name__ = name
        MODELS.register_module(name=name, module=unavailable, force=True)
    _ACTIVE['mmaction_vindlu_placeholders'] = reason
    return True


# --------------------------------------------------------------------------
# mmengine_checkpoint_allowlist

#: The statistics methods ``HistoryBuffer.__getstate__`` pickles (its
#: defaults, see ``HistoryBuffer._set_default_statistics``). Pickle stores a
#: method as ``getattr(HistoryBuffer, name)``.
_HISTORY_BUFFER_STATISTICS = frozenset(('min', 'max', 'current', 'mean'))

#: numpy dtypes whose arrays / scalars an MMEngine checkpoint may hold
#: (HistoryBuffer histories are float64 / int64; metric values kept in the
#: message hub, e.g. ``best_score``, may be any numeric scalar). Not
#: ``object``, whose arrays would carry arbitrary pickled objects.
_NUMPY_DTYPES = ('bool', 'int8', 'int16', 'int32', 'int64', 'uint8', 'uint16',
                 'uint32', 'uint64', 'float16', 'float32', 'float64')


def _history_buffer_getattr(obj, name):
    """``builtins.getattr`` for ``weights_only`` loading, narrowed to what
    MMEngine checkpoints use: ``getattr(HistoryBuffer, <statistics method>)``.

    MMEngine's ``HistoryBuffer.__getstate__`` saves its statistics methods
    (``HistoryBuffer.min`` ...), which pickle writes as a call of
    ``builtins.getattr``. Allow-listing ``getattr`` itself would let a file
    reach any attribute of any allowed object (``getattr(numpy.ndarray,
    'tofile')`` writes files), so this stand-in is registered under the name
    ``builtins.getattr`` instead and resolves nothing else.
    """
    from mmengine.logging import HistoryBuffer
    if obj is HistoryBuffer and name in _HISTORY_BUFFER_STATISTICS:
        return getattr(HistoryBuffer, name)
    methods = ', '.join(sorted(_HISTORY_BUFFER_STATISTICS))
    raise pickle.UnpicklingError(
        f'refusing getattr({obj!r}, {name!r}): MMEngine checkpoints only '
        f'reference the HistoryBuffer methods {methods}')


def mmengine_checkpoint_globals() -> List:
    """The globals an MMEngine (0.10.x) checkpoint holds besides tensors.

    Found with ``torch.serialization.get_unsafe_globals_in_checkpoint`` and
    ``pickletools`` on checkpoints a real Runner wrote (resume state of
    ``tools/train.py``: model, optimizer, param schedulers, message hub with
    ``HistoryBuffer`` logs and numpy scalars, config text, dataset meta;
    MMEngine saves no random states): ``HistoryBuffer``, ``builtins.getattr``
    (narrowed, see :func:`_history_buffer_getattr`), ``numpy.ndarray``,
    ``numpy.dtype``, ``numpy._core.multiarray._reconstruct`` and ``.scalar``.
    The same two functions are also listed under their numpy < 2 module
    name ``numpy.core.multiarray`` (checkpoints written with numpy 1.x), and
    the numeric numpy dtype classes, which loading builds.

    Use with torch's safe loader, e.g.::

        with torch.serialization.safe_globals(mmengine_checkpoint_globals()):
            ckpt = torch.load(path, weights_only=True)

    Returns:
        list: entries for ``torch.serialization.safe_globals``.
    """
    import numpy as np
    from mmengine.logging import HistoryBuffer
    try:
        from numpy._core import multiarray
    except ImportError:  # numpy < 2
        from numpy.core import multiarray
    entries = [
        (HistoryBuffer, 'mmengine.logging.history_buffer.HistoryBuffer'),
        (_history_buffer_getattr, 'builtins.getattr'),
        (np.ndarray, 'numpy.ndarray'),
        (np.dtype, 'numpy.dtype'),
    ]
    for module in ('numpy._core.multiarray', 'numpy.core.multiarray'):
        entries += [(multiarray._reconstruct, f'{module}._reconstruct'),
                    (multiarray.scalar, f'{module}.scalar')]
    entries += [type(np.dtype(name)) for name in _NUMPY_DTYPES]
    return entries


def load_from_local_safely(filename: str, map_location=None):
    """MMEngine's local-file checkpoint loader, with torch's safe loading.

    ``torch.load(..., weights_only=True)`` inside
    ``torch.serialization.safe_globals(mmengine_checkpoint_globals())``. The
    allow-list is scoped to this call rather than added process-wide
    (``add_safe_globals``), so every other ``torch.load`` in the process
    behaves exactly as torch ships it. (MMEngine logs it as the
    ``local_safely`` backend.)

    Raises:
        FileNotFoundError: ``filename`` is not a file.
        pickle.UnpicklingError: the file holds something else than tensors
            and the globals above (e.g. a pickled object that would run code
            when loaded); the message names the file.
    """
    import torch
    filename = os.path.expanduser(filename)
    if not os.path.isfile(filename):
        raise FileNotFoundError(f'{filename} can not be found.')
    with torch.serialization.safe_globals(mmengine_checkpoint_globals()):
        try:
            return torch.load(
                filename, map_location=map_location, weights_only=True)
        except pickle.UnpicklingError as err:
            raise pickle.UnpicklingError(
                f'{filename}: refused by torch\'s safe (weights_only) '
                f'loader: {err}') from None


def allow_mmengine_checkpoint_globals() -> bool:
    """Load MMEngine's local checkpoints with :func:`load_from_local_safely`.

    Registered as MMEngine's local-path scheme of ``CheckpointLoader``
    (``resume``, ``load_from``, ``load_checkpoint``, ``Pretrained`` init from
    a file). Remote schemes (``http://``...) keep MMEngine's loaders, which
    use ``torch.load``'s (safe) default.

    Returns:
        bool: True if registered (now or before).
    """
    from mmengine.runner.checkpoint import CheckpointLoader
    if CheckpointLoader._schemes.get('') is load_from_local_safely:
        return True
    torch_release = _release('torch')
    mmengine_release = _release('mmengine')
    if torch_release is None or torch_release[:2] < (2, 6) or \
            mmengine_release is None or mmengine_release >= (0, 11, 0):
        return False
    CheckpointLoader.register_scheme(
        prefixes='', loader=load_from_local_safely, force=True)
    _ACTIVE['mmengine_checkpoint_allowlist'] = (
        f'torch {_version("torch")} loads weights_only; mmengine '
        f'{_version("mmengine")} checkpoints hold HistoryBuffer and numpy '
        'objects: local checkpoints load with exactly those allowed')
    return True


# --------------------------------------------------------------------------
# mmengine_safe_url_checkpoints


def load_url_safely(url: str,
                    model_dir: Optional[str] = None,
                    map_location=None,
                    progress: bool = True,
                    check_hash: bool = False,
                    file_name: Optional[str] = None):
    """``torch.hub.load_state_dict_from_url`` with torch's safe loading.

    The download (and its cache in ``model_dir``, by default
    ``<torch hub dir>/checkpoints``) is torch's; the file is then loaded
    with ``weights_only=True`` inside
    ``torch.serialization.safe_globals(mmengine_checkpoint_globals())``,
    as a local checkpoint is (:func:`load_from_local_safely`).

    Raises:
        pickle.UnpicklingError: the file holds something else than tensors
            and MMEngine's checkpoint objects; the message names the URL
            and the downloaded file.
    """
    import torch
    allow = getattr(torch.serialization, 'safe_globals', None)
    with allow(mmengine_checkpoint_globals()) if allow else nullcontext():
        try:
            return torch.hub.load_state_dict_from_url(
                url,
                model_dir=model_dir,
                map_location=map_location,
                progress=progress,
                check_hash=check_hash,
                file_name=file_name,
                weights_only=True)
        except pickle.UnpicklingError as err:
            cached = os.path.join(
                model_dir or os.path.join(torch.hub.get_dir(), 'checkpoints'),
                file_name or os.path.basename(url.split('?')[0]))
            raise pickle.UnpicklingError(
                f'{url} (downloaded to {cached}): refused by torch\'s safe '
                f'(weights_only) loader: {err}') from None


def safe_url_checkpoints() -> bool:
    """Load MMEngine's ``http(s)://`` checkpoints with torch's safe loading.

    MMEngine's ``load_from_http`` (``http://``, ``https://``, and through it
    ``torchvision://``, ``open-mmlab://``, ``mmcls://`` URLs) calls
    ``torch.hub.load_state_dict_from_url``, whose ``weights_only`` defaults
    to False in every torch release: a downloaded checkpoint could run
    code when loaded. Guard: mmengine < 0.11 and its checkpoint module
    still calls that function. Fix: it calls :func:`load_url_safely`
    instead (the download and rank-0-first order are unchanged).

    Returns:
        bool: True if patched (now or before).
    """
    import torch
    from mmengine.runner import checkpoint
    if checkpoint.load_url is load_url_safely:
        return True
    mmengine_release = _release('mmengine')
    if checkpoint.load_url is not torch.hub.load_state_dict_from_url or \
            mmengine_release is None or mmengine_release >= (0, 11, 0):
        return False
    checkpoint.load_url = load_url_safely
    _ACTIVE['mmengine_safe_url_checkpoints'] = (
        f'mmengine {_version("mmengine")} loads http(s) checkpoints through '
        'torch.hub.load_state_dict_from_url, which unpickles anything by '
        'default: they load weights_only, with the local checkpoints\' '
        'allow-list')
    return True


# --------------------------------------------------------------------------
# mmengine_cpu_pytorch_launcher


def allow_cpu_pytorch_launcher() -> bool:
    """Make MMEngine's ``pytorch`` launcher work with a CPU-only torch.

    Returns:
        bool: True if patched (now or before).
    """
    import torch
    from mmengine.dist import utils as dist_utils
    if getattr(dist_utils._init_dist_pytorch, 'amfir_cpu_launcher', False):
        return True
    release = _release('mmengine')
    if torch.cuda.is_available() or release is None or \
            release >= (0, 11, 0):
        return False

    def _init_dist_pytorch(backend='nccl', init_backend='torch', **kwargs):
        if backend == 'nccl':
            warnings.warn('nccl needs CUDA, which this torch lacks: using '
                          'the gloo backend')
            backend = 'gloo'
        if init_backend != 'torch':
            raise RuntimeError(f'init_backend={init_backend!r} needs CUDA')
        torch.distributed.init_process_group(backend=backend, **kwargs)

    _init_dist_pytorch.amfir_cpu_launcher = True
    dist_utils._init_dist_pytorch = _init_dist_pytorch

    from mmengine.model import MMDistributedDataParallel
    wrap_init = MMDistributedDataParallel.__init__

    def __init__(self, module, detect_anomalous_params=False, **kwargs):
        kwargs.pop('device_ids', None)  # CPU modules take none
        wrap_init(self, module, detect_anomalous_params, **kwargs)

    MMDistributedDataParallel.__init__ = __init__
    _ACTIVE['mmengine_cpu_pytorch_launcher'] = (
        f'mmengine {_version("mmengine")} pytorch launcher and DDP wrapper '
        'need CUDA, this torch has none: gloo process group, no device_ids')
    return True


# --------------------------------------------------------------------------
# MMFlow


def _mmflow_needs_fixes() -> bool:
    release = _release('mmflow')
    return release is not None and release <= (1, 0, 0)


@contextmanager
def _stub_mmcv_ops():
    """Temporarily provide ``mmcv.ops`` names MMFlow imports at load time."""
    try:
        import mmcv.ops  # noqa: F401 - full mmcv: nothing to do
        yield False
        return
    except ImportError:
        pass
    saved = sys.modules.get('mmcv.ops')
    stub = types.ModuleType('mmcv.ops')
    stub.Correlation = _missing_op(
        'Correlation', 'PWC-Net, FlowNetC and LiteFlowNet use it; it is '
        'CUDA-only even in full mmcv')
    stub.DeformConv2d = _missing_op('DeformConv2d', 'MaskFlowNet uses it')
    sys.modules['mmcv.ops'] = stub
    try:
        yield True
    finally:
        if saved is None:
            sys.modules.pop('mmcv.ops', None)
        else:
            sys.modules['mmcv.ops'] = saved


def import_mmflow_models():
    """Import and return ``mmflow.models`` (registering MMFlow's models).

    Works under ``mmcv-lite``: models needing compiled ops raise
    :class:`MissingCompiledOpError` when built instead of breaking the
    import.
    """
    if 'mmflow.models' in sys.modules:
        return sys.modules['mmflow.models']
    if not _mmflow_needs_fixes():
        return importlib.import_module('mmflow.models')
    with _stub_mmcv_ops() as stubbed:
        module = importlib.import_module('mmflow.models')
    if stubbed:
        _ACTIVE['mmflow_mmcv_ops_stand_in'] = (
            f'mmflow {_version("mmflow")} imports mmcv.ops, which mmcv-lite '
            'lacks: a stand-in while importing (compiled-op models fail '
            'when built)')
    return module


def fix_mmflow_batched_postprocess(model) -> int:
    """Make the MMFlow decoders of ``model`` post-process every sample.

    ``BaseDecoder.postprocess_result`` in mmflow 1.0.0rc0 returns inside its
    loop, so only the first sample of a batch gets ``pred_flow_fw``. Each
    decoder of *this* model instance gets a wrapper that calls it once per
    sample when given data samples (the path MMFlow's predict takes);
    MMFlow's classes are left untouched.

    Returns:
        int: how many decoders were wrapped now (0 where mmflow needs no fix
        or the model's decoders already are).
    """
    if not _mmflow_needs_fixes():
        return 0
    from mmflow.models.decoders.base_decoder import BaseDecoder
    wrapped = 0
    for module in model.modules():
        original = getattr(module, 'postprocess_result', None)
        if not isinstance(module, BaseDecoder) or getattr(
                original, '_per_sample', False):
            continue

        def per_sample(flow_results, data_samples=None, _orig=original):
            if data_samples is None:
                return _orig(flow_results, data_samples)
            for result, sample in zip(flow_results, data_samples):
                _orig([result], [sample])
            return data_samples

        per_sample._per_sample = True
        module.postprocess_result = per_sample
        wrapped += 1
    if wrapped:
        _ACTIVE['mmflow_batched_postprocess'] = (
            f'mmflow {_version("mmflow")} decoders post-process only the '
            'first sample of a batch: per-sample calls on built models')
    return wrapped


# --------------------------------------------------------------------------


def apply_all() -> None:
    """Apply the fixes every amfir-mm process needs (each under its guard).

    Also silences mmcv-lite's import-time warning that
    ``MultiScaleDeformableAttention`` (a compiled op no recogniser here uses)
    is unavailable: it is expected with the pinned stack.
    """
    warnings.filterwarnings(
        'ignore', message='Fail to import ``MultiScaleDeformableAttention``')
    patch_mmaction_drn()
    guard_mmaction_vindlu()
    allow_mmengine_checkpoint_globals()
    safe_url_checkpoints()
    allow_cpu_pytorch_launcher()
