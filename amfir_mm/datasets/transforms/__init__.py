from .paired import *  # noqa: F401,F403
from .paired import __all__ as _paired_all

__all__ = list(_paired_all)
