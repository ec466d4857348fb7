"""Building the runner a config names, for the tools."""
from mmaction.registry import RUNNERS
from mmengine.config import Config
from mmengine.runner import Runner


def build_runner(cfg: Config) -> Runner:
    """``Runner.from_cfg(cfg)``, or, where the config sets ``runner_type``
    (e.g. ``'ChannelsLastRunner'``), that runner from MMAction2's registry
    (MMAction2's tools' convention)."""
    if 'runner_type' in cfg:
        return RUNNERS.build(cfg)
    return Runner.from_cfg(cfg)
