"""Finding videos / frame folders and reading their RGB frames.

A *source* is either a video file (decoded with decord, falling back to
PyAV) or a folder of RGB frames (``img_%05d.jpg`` if present, else every
JPEG/PNG in natural sort order, e.g. ``00000001.jpg``). Frames come out as
``(H, W, 3)`` uint8 RGB arrays, one at a time. Folders are scanned with
:func:`amfir_mm.utils.io.walk_folders` (hidden entries skipped, symbolic
links to folders followed, loops skipped).
"""
import os
import os.path as osp
import re
from dataclasses import dataclass
from typing import Callable, Dict, Iterator, List, Optional, Tuple

import numpy as np

from ..utils.io import (DataError, NoVideosFoundError, list_folder, read_image,
                        walk_folders)

VIDEO_EXTENSIONS = ('.mp4', '.avi', '.webm', '.mkv', '.mov', '.m4v', '.mpg',
                    '.mpeg', '.wmv', '.flv')
IMAGE_EXTENSIONS = ('.jpg', '.jpeg', '.png')
_RAWFRAME_RGB = re.compile(r'^img_\d+\.jpg$')


class FrameReadError(DataError, RuntimeError):
    """A video or frame folder cannot be read (message names the file)."""


@dataclass(frozen=True)
class FlowSource:
    """One video to convert.

    Attributes:
        path (str): Video file or frame folder.
        rel_out (str): Output folder relative to the output root (``/``).
        kind (str): ``'video'``, ``'frames'`` or ``'missing'`` (a list-file
            entry that does not exist; reported as a failure).
        label (int, optional): Label given by a list file, if any.
    """
    path: str
    rel_out: str
    kind: str
    label: Optional[int] = None

    @property
    def class_name(self) -> Optional[str]:
        """Name of the parent folder in ``rel_out`` (None at the top)."""
        parts = self.rel_out.split('/')
        return parts[-2] if len(parts) >= 2 else None


def _natural_key(name: str) -> list:
    return [int(t) if t.isdigit() else t for t in re.split(r'(\d+)', name)]


def list_frame_files(folder: str) -> List[str]:
    """Sorted RGB frame file names of a frame folder.

    ``img_*.jpg`` files if there are any (so a rawframe folder's ``x_``/``y_``
    flow images are ignored), else all JPEG/PNG files, in natural order.
    Hidden files are skipped; a broken symbolic link is listed (and fails
    when read).
    """
    _, names = list_folder(folder)
    rawframes = [n for n in names if _RAWFRAME_RGB.match(n)]
    if rawframes:
        names = rawframes
    else:
        names = [n for n in names if n.lower().endswith(IMAGE_EXTENSIONS)]
    return sorted(names, key=_natural_key)


def _is_video(name: str) -> bool:
    return name.lower().endswith(VIDEO_EXTENSIONS)


def _video_out_names(names: List[str]) -> Dict[str, str]:
    """Output folder name per video: the stem, or the full name if stems
    collide (``test.mp4`` and ``test.avi`` -> ``test.mp4/``, ``test.avi/``).
    """
    stems: Dict[str, int] = {}
    for name in names:
        stem = osp.splitext(name)[0]
        stems[stem] = stems.get(stem, 0) + 1
    return {
        n: osp.splitext(n)[0] if stems[osp.splitext(n)[0]] == 1 else n
        for n in names
    }


def discover_sources(src: str,
                     exclude: Optional[str] = None) -> List[FlowSource]:
    """Find the videos and frame folders under ``src``.

    Args:
        src (str): A folder (searched recursively; hidden entries skipped),
            a single video file, or a list file (see
            :func:`read_source_list`).
        exclude (str, optional): A folder not to descend into (the output
            folder when it lies inside ``src``).

    Returns:
        list[FlowSource]: Sorted by ``rel_out``. A frame folder at ``src``
        itself is named after ``src``. Symbolic links to folders are
        followed (a link loop is skipped with a warning).

    Raises:
        FileNotFoundError: ``src`` does not exist, or holds no video or
            frame folder (:class:`NoVideosFoundError`).
    """
    if osp.isfile(src):
        if _is_video(src):
            name = osp.splitext(osp.basename(src))[0]
            return [FlowSource(osp.abspath(src), name, 'video')]
        return read_source_list(src)
    if not osp.isdir(src):
        raise FileNotFoundError(f'source not found: {src}')
    src = osp.abspath(src)
    sources = []
    for folder, _, files in walk_folders(src, exclude):
        rel = osp.relpath(folder, src)
        rel = osp.basename(src) if rel == '.' else rel.replace(os.sep, '/')
        if list_frame_files(folder):
            sources.append(FlowSource(folder, rel, 'frames'))
        videos = [f for f in files if _is_video(f)]
        prefix = '' if folder == src else rel + '/'
        for name, out_name in _video_out_names(videos).items():
            sources.append(
                FlowSource(osp.join(folder, name), prefix + out_name, 'video'))
    if not sources:
        raise NoVideosFoundError(
            f'no videos or frame folders found in {src} (searched '
            'recursively; hidden entries are skipped)')
    return sorted(sources, key=lambda s: s.rel_out)


def read_source_list(list_file: str,
                     root: Optional[str] = None) -> List[FlowSource]:
    """Read a list of videos / frame folders, one per line.

    Each line is ``<path>``, ``<path> <label>`` (MMAction2 video list) or
    ``<path> <total_frames> <label>`` (MMAction2 rawframe list). Relative
    paths are relative to ``root`` (default: the list file's folder); the
    output mirrors the path relative to ``root``, without a video
    extension. Blank lines and ``#`` comments are skipped. Missing entries
    are kept (``kind='missing'``) so that they are reported, not dropped.

    Raises:
        NoVideosFoundError: the list names no video.
    """
    root = osp.abspath(root or osp.dirname(osp.abspath(list_file)))
    sources = []
    with open(list_file, encoding='utf-8') as f:
        for line_no, raw in enumerate(f, start=1):
            fields = raw.split()
            if not fields or fields[0].startswith('#'):
                continue
            path = osp.normpath(osp.join(root, fields[0]))
            rel = osp.relpath(path, root)
            if rel.startswith('..'):
                raise ValueError(f'{list_file}:{line_no}: {fields[0]} is not '
                                 f'inside the source root {root}')
            # MMAction2 lists: "video label" or "frame_dir total_frames label"
            label = None
            if len(fields) in (2, 3) and re.fullmatch(r'-?\d+', fields[-1]):
                label = int(fields[-1])
            if osp.isdir(path):
                kind = 'frames'
            else:
                kind = 'video' if osp.isfile(path) else 'missing'
                if _is_video(path):
                    rel = osp.splitext(rel)[0]
            sources.append(
                FlowSource(path, rel.replace(os.sep, '/'), kind, label))
    if not sources:
        raise NoVideosFoundError(f'{list_file}: no videos listed')
    return sources


def _decord_frames(path: str, chunk: int = 16) -> Iterator[np.ndarray]:
    import decord
    reader = decord.VideoReader(path, num_threads=1)
    for start in range(0, len(reader), chunk):
        indices = list(range(start, min(start + chunk, len(reader))))
        yield from reader.get_batch(indices).asnumpy()


def _pyav_frames(path: str) -> Iterator[np.ndarray]:
    import av
    with av.open(path) as container:
        if not container.streams.video:
            raise FrameReadError(f'{path}: no video stream')
        for frame in container.decode(video=0):
            yield frame.to_ndarray(format='rgb24')


def _folder_frames(folder: str) -> Iterator[np.ndarray]:
    names = list_frame_files(folder)
    if not names:
        raise FrameReadError(f'{folder}: no JPEG/PNG frames')
    for name in names:
        path = osp.join(folder, name)
        try:
            yield read_image(path, channel_order='rgb')
        except OSError as err:  # missing file, UnreadableFrameError
            raise FrameReadError(str(err)) from err


def _guarded(path: str, frames: Iterator[np.ndarray]) -> Iterator[np.ndarray]:
    """Turn any decoder exception into :class:`FrameReadError`."""
    try:
        yield from frames
    except FrameReadError:
        raise
    except Exception as err:  # decoders raise many types (DECORDError, ...)
        raise FrameReadError(f'{path}: {type(err).__name__}: {err}') from err


FrameReader = Tuple[str, Callable[[], Iterator[np.ndarray]]]


def frame_readers(source: FlowSource) -> List[FrameReader]:
    """``(name, make_iterator)`` readers to try in order for ``source``.

    Every iterator yields ``(H, W, 3)`` uint8 RGB frames and raises
    :class:`FrameReadError` (naming the file) when reading fails.
    """
    path = source.path
    if source.kind == 'video':
        return [('decord', lambda: _guarded(path, _decord_frames(path))),
                ('pyav', lambda: _guarded(path, _pyav_frames(path)))]
    if source.kind == 'frames':
        return [('frames', lambda: _guarded(path, _folder_frames(path)))]
    return []
