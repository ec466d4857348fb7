from .decode import *  # noqa: F401,F403
from .decode import __all__ as _decode_all
from .paired import *  # noqa: F401,F403
from .paired import __all__ as _paired_all

__all__ = list(_decode_all) + list(_paired_all)
