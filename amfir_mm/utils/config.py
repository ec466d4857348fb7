"""Reading a user's config file, with errors that name the file.

A config is user input: a typo in it (a syntax error, a ``_base_`` that does
not exist, a ``type`` no registry has) is reported as one
:class:`ConfigError` naming the config file, not as a traceback through
MMEngine.
"""
import ast
import os.path as osp
import re
from contextlib import contextmanager
from typing import Callable, Optional, Union

from .io import DataError

#: MMEngine's message for a ``type`` that no registry in scope has.
_NOT_REGISTERED = re.compile(r'(\S+) is not in the (\S+) registry')


class ConfigError(DataError, ValueError):
    """A config file cannot be read, or names a type no registry has."""


def load_config(path: str):
    """``mmengine.Config.fromfile(path)``; what goes wrong while reading it
    (no such file, a syntax error, an error raised by its code or its
    ``_base_`` files) is a :class:`ConfigError` naming ``path``.

    The ``ToolRun`` of a running tool (:func:`~amfir_mm.utils.tool.run_tool`)
    records ``path``, so that a registry error while building what the
    config describes names it too (:func:`registry_error`).
    """
    from mmengine.config import Config

    from . import tool
    path = str(path)
    if not osp.isfile(path):
        raise ConfigError(f'{path}: no such config file')
    if tool._CURRENT_RUN is not None:
        tool._CURRENT_RUN.config = path
    try:
        return Config.fromfile(path)
    except SyntaxError as err:
        line = f'line {err.lineno}: ' if err.lineno else ''
        if err.filename and osp.isfile(err.filename):
            where = err.filename
        elif _parses(path):  # the error is in one of its _base_ files
            where, line = f'{path}: a _base_ file', line.replace(
                'line', 'its line')
        else:
            where = path
        raise ConfigError(f'{where}: syntax error: {line}{err.msg}') from err
    except Exception as err:  # the config's own code failed
        raise ConfigError(f'{path}: {type(err).__name__}: {err}') from err


def _parses(path: str) -> bool:
    """Whether the Python file ``path`` has no syntax error."""
    with open(path, encoding='utf-8') as f:
        try:
            ast.parse(f.read())
        except SyntaxError:
            return False
    return True


def registry_error(err: BaseException,
                   config: Optional[str]) -> Optional[ConfigError]:
    """The :class:`ConfigError` for MMEngine's ``KeyError`` "``X`` is not in
    the ``scope::kind`` registry" raised while building from ``config``, or
    None for any other error."""
    if not isinstance(err, KeyError) or not err.args:
        return None
    match = _NOT_REGISTERED.search(str(err.args[0]))
    if match is None:
        return None
    name, registry = match.groups()
    where = f'{config}: ' if config else ''
    return ConfigError(
        f'{where}type {name!r} is not in the {registry} registry (a typo, '
        'or custom_imports does not import the module that registers it)')


@contextmanager
def config_errors_name(config: Union[str, Callable[[], Optional[str]], None]):
    """Inside, MMEngine's "not in the registry" ``KeyError`` becomes the
    :class:`ConfigError` of :func:`registry_error` naming ``config`` (a path,
    or a callable that gives it when the error happens); any other error
    passes unchanged."""
    try:
        yield
    except KeyError as err:
        error = registry_error(err, config() if callable(config) else config)
        if error is None:
            raise
        raise error from err
