"""Building the runner a config names, for the tools."""
from mmaction.registry import RUNNERS
from mmengine.config import Config
from mmengine.runner import Runner

from ..engine.hooks import InitUntrainedModelHook, RNGStateHook


def build_runner(cfg: Config) -> Runner:
    """``Runner.from_cfg(cfg)``, or, where the config sets ``runner_type``
    (e.g. ``'ChannelsLastRunner'``), that runner from MMAction2's registry
    (MMAction2's tools' convention).

    The runner gets two hooks of :mod:`amfir_mm.engine.hooks`:
    :class:`~amfir_mm.engine.hooks.InitUntrainedModelHook` (a test or
    validation without a checkpoint, ``tools/test.py CONFIG none``,
    evaluates the initialised model, e.g. the ImageNet backbone, not the
    constructors' random weights) and
    :class:`~amfir_mm.engine.hooks.RNGStateHook` (checkpoints hold torch's
    RNG states and ``--resume`` restores them: a killed and resumed run
    trains as an uninterrupted one).
    """
    runner = RUNNERS.build(cfg) if 'runner_type' in cfg else \
        Runner.from_cfg(cfg)
    runner.register_hook(InitUntrainedModelHook())
    runner.register_hook(RNGStateHook())
    return runner
