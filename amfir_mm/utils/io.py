"""Data input helpers shared by the datasets, flow extraction and tools.

- :class:`DataError`: the base class of the project's bad-input errors
  (malformed split list, unreadable frame, too few videos, ...). The tools
  print such an error as one line naming the file (:func:`error_line`)
  instead of a traceback.
- :func:`decode_image` / :func:`read_image`: decode one frame file, raising
  :class:`UnreadableFrameError` (naming the file) where OpenCV returns
  nothing or fails.
- :func:`list_folder` / :func:`walk_folders`: the one way data folders are
  scanned: hidden entries (``.DS_Store``, the flow extractor's
  ``.<name>.partial`` folders) are skipped and symbolic links to folders are
  followed, with symlink loops skipped (and logged) instead of descended.
"""
import os
import os.path as osp
from typing import Iterator, List, Optional, Tuple

import cv2
import mmcv
import numpy as np


class DataError(Exception):
    """Bad input data; the message names the file (and line) at fault.

    Subclasses also derive from the built-in type that fits
    (``ValueError``, ``OSError``, ...), so existing ``except`` clauses
    still catch them.  Constructors take the message only, so that
    PyTorch's data-loader workers can re-raise them with their type.
    """


class UnreadableFrameError(DataError, OSError):
    """A frame file exists but cannot be decoded as an image."""


class NoVideosFoundError(DataError, FileNotFoundError):
    """A data folder or list holds no video / frame folder."""


class RefuseOverwriteError(DataError, FileExistsError):
    """A tool would overwrite or delete something it did not create."""


def decode_image(content: bytes,
                 path: str,
                 flag: str = 'color',
                 channel_order: str = 'bgr') -> np.ndarray:
    """Decode the bytes of an image file with :func:`mmcv.imfrombytes`.

    Args:
        content (bytes): the file's bytes.
        path (str): the file's path, for the error message.
        flag (str): ``'color'`` -> ``(H, W, 3)``, ``'grayscale'`` ->
            ``(H, W)``, uint8.
        channel_order (str): ``'bgr'`` or ``'rgb'`` (colour images).

    Raises:
        UnreadableFrameError: the bytes are not a decodable image (corrupt,
            truncated, empty or another file type); the message names
            ``path``.
    """
    try:
        image = mmcv.imfrombytes(
            content, flag=flag, channel_order=channel_order)
    except cv2.error:  # empty input, or cvtColor of a failed decode
        image = None
    if image is None:
        raise UnreadableFrameError(
            f'unreadable frame {path}: it cannot be decoded as an image '
            f'({len(content)} bytes; corrupt, truncated or not an image '
            'file)')
    return image


def read_image(path: str,
               flag: str = 'color',
               channel_order: str = 'bgr') -> np.ndarray:
    """Read and decode an image file (see :func:`decode_image`).

    Raises:
        FileNotFoundError: ``path`` does not exist.
        UnreadableFrameError: it exists but cannot be decoded.
    """
    with open(path, 'rb') as f:
        content = f.read()
    return decode_image(content, path, flag, channel_order)


def error_line(err: BaseException) -> str:
    """One line ``'<ErrorType>: <message>'`` for a tool to print.

    An error re-raised by a PyTorch data-loader worker carries the worker's
    whole traceback in its message; its last line (the original error) is
    kept.
    """
    text = str(err).strip()
    lines = text.splitlines()
    if len(lines) > 1 and lines[0].startswith('Caught ') and \
            'Traceback' in lines[1]:
        kind, sep, message = lines[-1].partition(': ')
        if sep:  # 'amfir_mm.utils.io.UnreadableFrameError' -> class name
            return f'{kind.rpartition(".")[2]}: {message}'
        return lines[-1]
    return f'{type(err).__name__}: {text}'


def list_folder(folder: str) -> Tuple[List[str], List[str]]:
    """Sorted names of a folder's sub-folders and other entries.

    Hidden entries (names starting with ``.``) are left out. A symbolic
    link to a folder counts as a folder; other entries (files, broken
    links) as files.

    Returns:
        tuple[list[str], list[str]]: ``(folders, files)``.
    """
    folders, files = [], []
    for name in sorted(os.listdir(folder)):
        if name.startswith('.'):
            continue
        (folders if osp.isdir(osp.join(folder, name)) else files).append(name)
    return folders, files


def walk_folders(root: str,
                 exclude: Optional[str] = None
                 ) -> Iterator[Tuple[str, List[str], List[str]]]:
    """Like ``os.walk(root, followlinks=True)``, top-down, sorted, without
    hidden entries and safe from symlink loops.

    A linked folder is descended into unless it resolves to ``exclude`` or
    to a folder on its own path from ``root`` (a loop); a loop is logged as
    a warning and skipped. The same real folder reached through two
    different links is visited twice (once under each name).

    Args:
        root (str): folder to walk.
        exclude (str, optional): folder not to descend into (by real path).

    Yields:
        tuple: ``(folder, folders, files)`` as :func:`list_folder` gives
        them, ``folder`` being the path through the links (under ``root``).
    """
    excluded = osp.realpath(exclude) if exclude else None
    stack = [(root, (osp.realpath(root), ))]
    while stack:
        folder, ancestors = stack.pop()
        folders, files = list_folder(folder)
        yield folder, folders, files
        children = []
        for name in folders:
            path = osp.join(folder, name)
            real = osp.realpath(path)
            if real == excluded:
                continue
            if real in ancestors:
                from mmengine.logging import MMLogger
                MMLogger.get_current_instance().warning(
                    f'skipping {path}: a symbolic link loop (it leads back '
                    f'to {real})')
                continue
            children.append((path, ancestors + (real, )))
        stack.extend(reversed(children))  # visit in sorted order
