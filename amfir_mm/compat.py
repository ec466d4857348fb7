"""Explicit fixes for the three known breakages of the pinned OpenMMLab stack.

Every work-around for the stack lives here, is applied once by
``import amfir_mm`` (idempotent) and is covered by ``tests/test_compat.py``.
See ``../shared/STACK.md`` and the README's "Why these pins" for context.

1. ``mmaction2==1.2.0`` wheels miss ``mmaction.models.localizers.drn``
   (open-mmlab/mmaction2#2714), so ``import mmaction.models`` raises
   ``ModuleNotFoundError``.  We insert a stub package in its place whose
   ``DRN`` fails loudly when built.  Nothing else in MMAction2 uses it.
2. torch >= 2.6 loads checkpoints with ``weights_only=True``; MMEngine's
   checkpoints pickle its own objects (the message hub's ``HistoryBuffer``,
   reached through ``builtins.getattr``), so resume and ``load_from`` raise
   ``UnpicklingError``.  Allow-listing ``getattr`` would make the safe
   loader unsafe, so MMEngine's *local-file* checkpoint scheme is
   re-registered to load the user's own checkpoints fully; the process-wide
   ``torch.load`` default is left alone.
3. MMFlow 1.0.0rc0 imports ``mmcv.ops`` (``Correlation``, ``DeformConv2d``)
   at module import time; under ``mmcv-lite`` there is no compiled
   ``mmcv._ext``.  :func:`import_mmflow_models` imports MMFlow's model package
   with a temporary stand-in for ``mmcv.ops`` whose classes raise a clear
   error if a model that really needs them (PWC-Net, FlowNetC, MaskFlowNet)
   is built.  RAFT is pure PyTorch and works.  The stand-in is removed from
   ``sys.modules`` afterwards, so other code still sees the truth.
4. (found here, not in STACK.md) MMEngine 0.10.7's ``pytorch`` launcher
   calls ``torch.cuda.set_device`` unconditionally, which raises on a
   CPU-only torch, and its runner wraps the model in DDP with
   ``device_ids=[LOCAL_RANK]``, which CPU modules reject; so
   ``tools/dist_train.sh`` could not run on CPU even with gloo.  Without
   CUDA, :func:`allow_cpu_pytorch_launcher` initialises the process group
   directly (gloo, with a warning, where the config asks for nccl) and drops
   ``device_ids`` when wrapping.
5. (found on the GPU machine, whose image has ``transformers`` 5.x) where
   ``transformers`` is installed, MMAction2 1.2.0 imports its VindLU models
   in ``import mmaction.models``, and VindLU imports
   ``apply_chunking_to_forward`` from ``transformers.modeling_utils``,
   which transformers 5 removed: ``import mmaction.models`` raises
   ``ImportError``.  :func:`skip_broken_mmaction_multimodal` makes MMAction2
   take its own "multimodal dependencies missing" path (placeholders that
   raise when a VindLU model is built) for transformers >= 5.
"""
import importlib
import importlib.util
import os
import sys
import types
import warnings
from contextlib import contextmanager

_DRN_MODULE = 'mmaction.models.localizers.drn'


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


def patch_mmaction_drn() -> bool:
    """Insert a stub for the module missing from the mmaction2 1.2.0 wheel.

    Returns:
        bool: True if the stub was inserted, False if the real module exists.
    """
    if _DRN_MODULE in sys.modules:
        return False
    # Look for the folder without importing ``mmaction.models`` (whose
    # ``__init__`` is what fails).
    spec = importlib.util.find_spec('mmaction')
    if spec is None:
        raise ModuleNotFoundError('amfir-mm needs mmaction2 (pip install '
                                  'mmaction2==1.2.0)')
    for root in spec.submodule_search_locations:
        if os.path.isdir(os.path.join(root, 'models', 'localizers', 'drn')):
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
    return True


def skip_broken_mmaction_multimodal() -> bool:
    """Keep ``import mmaction.models`` working beside transformers >= 5.

    Returns:
        bool: True if MMAction2's multimodal (VindLU) models were switched to
        its placeholders; False if nothing needed doing (transformers absent
        or < 5, or ``mmaction.models`` already imported).
    """
    from importlib import metadata
    if 'mmaction.models.multimodal' in sys.modules:
        return False
    try:
        version = metadata.version('transformers')
    except metadata.PackageNotFoundError:
        return False
    if not transformers_breaks_vindlu(version):
        return False
    from mmaction.utils import dependency
    dependency.WITH_MULTIMODAL = False  # read by mmaction.models.multimodal
    return True


def transformers_breaks_vindlu(version: str) -> bool:
    """Whether this ``transformers`` version lacks what VindLU imports
    (``modeling_utils.apply_chunking_to_forward``, removed in 5.0)."""
    major = version.split('.')[0]
    return major.isdigit() and int(major) >= 5


def trust_local_mmengine_checkpoints() -> None:
    """Let MMEngine load the local checkpoints a user points it at.

    MMEngine's resume state pickles its ``HistoryBuffer`` objects, whose
    statistics methods are stored via ``builtins.getattr``; allow-listing
    ``getattr`` for ``weights_only`` loading would defeat the safe loader
    (``getattr(numpy.ndarray, 'tofile')`` writes files), so instead MMEngine's
    local-path loader scheme is re-registered to load with
    ``weights_only=False``, as MMEngine did before torch 2.6.  It serves only
    files given to MMEngine as ``load_from`` / ``resume`` / ``Pretrained``
    init (your own checkpoints); ``torch.load`` keeps its safe default
    everywhere else, and remote checkpoints (``http://``,
    ``torchvision://``) keep MMEngine's own loaders.
    """
    import torch
    from mmengine.runner.checkpoint import CheckpointLoader

    @CheckpointLoader.register_scheme(prefixes='', force=True)
    def load_from_local(filename, map_location):
        filename = os.path.expanduser(filename)
        if not os.path.isfile(filename):
            raise FileNotFoundError(f'{filename} can not be found.')
        return torch.load(filename, map_location=map_location,
                          weights_only=False)


def allow_cpu_pytorch_launcher() -> None:
    """Make MMEngine's ``pytorch`` launcher work with a CPU-only torch."""
    import torch
    from mmengine.dist import utils as dist_utils
    if torch.cuda.is_available() or getattr(
            dist_utils._init_dist_pytorch, 'amfir_cpu_launcher', False):
        return

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
    with _stub_mmcv_ops():
        return importlib.import_module('mmflow.models')


def apply_all() -> None:
    """Apply the fixes every amfir-mm process needs (1, 2, 4 and 5).

    Also silences mmcv-lite's import-time warning that
    ``MultiScaleDeformableAttention`` (a compiled op no recogniser here uses)
    is unavailable: it is expected with the pinned stack.
    """
    warnings.filterwarnings(
        'ignore', message='Fail to import ``MultiScaleDeformableAttention``')
    patch_mmaction_drn()
    skip_broken_mmaction_multimodal()
    trust_local_mmengine_checkpoints()
    allow_cpu_pytorch_launcher()
