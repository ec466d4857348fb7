"""amfir-mm: few-shot action recognition from RGB and optical flow.

Importing the package applies the stack fixes of :mod:`amfir_mm.compat` and
registers every module into MMAction2's registries.
"""
from . import compat

compat.apply_all()

from . import apis  # noqa: E402,F401
from . import datasets, engine, evaluation, models, utils  # noqa: E402,F401
from .version import __version__  # noqa: E402,F401
