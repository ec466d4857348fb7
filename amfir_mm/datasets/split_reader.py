"""Readers for the public few-shot split lists and frame folders.

A split file holds one video per line as ``<class>/<video_id>``, as in the
OTAM (SSv2-full: ``train12/<id>``), CMN (SSv2-small, Kinetics-100:
``<class name>/<id>``) and ARN (HMDB51, UCF101) lists.  Class names may hold
spaces (Kinetics); the video id is whatever follows the last ``/``.
"""
import os
import os.path as osp
import re
from dataclasses import dataclass
from typing import Dict, List, Optional

from ..utils.io import DataError, NoVideosFoundError, list_folder


class SplitFormatError(DataError, ValueError):
    """A split / annotation file is malformed (names the file and line)."""


@dataclass(frozen=True)
class SplitEntry:
    """One line of a split file.

    Attributes:
        class_name (str): e.g. ``'train3'`` or ``'playing cello'``.
        video_id (str): the video's folder name.
        line_no (int): 1-based line number in the split file (0 when the
            entry comes from a folder scan).
    """
    class_name: str
    video_id: str
    line_no: int = 0

    @property
    def rel_dir(self) -> str:
        """``<class>/<video_id>``, the frame folder relative to the root."""
        return f'{self.class_name}/{self.video_id}'


def read_split_file(path: str) -> List[SplitEntry]:
    """Read a few-shot split list.

    Blank lines and lines starting with ``#`` are skipped; anything else must
    be ``<class>/<video_id>`` with both parts non-empty.

    Raises:
        FileNotFoundError: the split file does not exist.
        SplitFormatError: a line is malformed (message names file and line).
    """
    if not osp.isfile(path):
        raise FileNotFoundError(f'data not found at {path}: the split file '
                                'is missing')
    entries = []
    with open(path, encoding='utf-8') as f:
        for line_no, raw in enumerate(f, start=1):
            line = raw.strip()
            if not line or line.startswith('#'):
                continue
            class_name, sep, video_id = line.rpartition('/')
            if not sep or not class_name.strip() or not video_id.strip() \
                    or ' ' in video_id:
                raise SplitFormatError(
                    f'{path}:{line_no}: expected "<class>/<video_id>", got '
                    f'{line!r}')
            entries.append(
                SplitEntry(class_name.strip(), video_id.strip(), line_no))
    if not entries:
        raise SplitFormatError(f'{path}: no videos listed')
    return entries


def scan_class_folders(root: str) -> List[SplitEntry]:
    """List ``<root>/<class>/<video_id>/`` folders as split entries.

    Symbolic links to class or video folders are followed (a split is often
    assembled from links); hidden entries (``.DS_Store``, the flow
    extractor's ``.<video>.partial`` folders) are skipped.

    Raises:
        FileNotFoundError: ``root`` is not a folder, a class or video entry
            is a broken symbolic link, or no video folder is found
            (:class:`NoVideosFoundError`).
    """
    if not osp.isdir(root):
        raise FileNotFoundError(f'data not found at {root}: the data root '
                                'is missing')
    entries = []
    class_names, others = list_folder(root)
    _check_links(root, others)
    for class_name in class_names:
        class_dir = osp.join(root, class_name)
        videos, others = list_folder(class_dir)
        _check_links(class_dir, others)
        entries.extend(SplitEntry(class_name, video_id) for video_id in videos)
    if not entries:
        raise NoVideosFoundError(
            f'no <class>/<video>/ folders found under {root}')
    return entries


def _check_links(folder: str, names: List[str]) -> None:
    """Raise for a broken symbolic link among ``folder``'s ``names``."""
    for name in names:
        path = osp.join(folder, name)
        if osp.islink(path) and not osp.exists(path):
            raise FileNotFoundError(f'{path} is a broken symbolic link (to '
                                    f'{os.readlink(path)})')


def template_regex(filename_tmpl: str) -> 're.Pattern':
    """A regex matching the file names a frame template produces.

    ``'img_{:05d}.jpg'`` -> ``^img_(\\d+)\\.jpg$``, capturing the index.
    """
    parts = re.split(r'\{[^}]*\}', filename_tmpl)
    if len(parts) != 2:
        raise ValueError(f'filename_tmpl must hold exactly one "{{}}" field, '
                         f'got {filename_tmpl!r}')
    return re.compile('^' + re.escape(parts[0]) + r'(\d+)' +
                      re.escape(parts[1]) + '$')


def count_frames(frame_dir: str,
                 filename_tmpl: str,
                 start_index: int = 1,
                 where: Optional[str] = None) -> int:
    """Count a folder's frames and check they are consecutive.

    Args:
        frame_dir: folder of frames.
        filename_tmpl: e.g. ``'img_{:05d}.jpg'`` or ``'{:08d}.jpg'``.
        start_index: index of the first frame (1 for rawframes).
        where: ``'file:line'`` of the annotation naming this folder, put in
            error messages.

    Returns:
        int: number of frames ``n``; frames ``start_index .. start_index+n-1``
        all exist.

    Raises:
        FileNotFoundError: the folder is missing, holds no matching frame,
            or has a gap in its frame numbers.
    """
    origin = f' (listed at {where})' if where else ''
    if not osp.isdir(frame_dir):
        raise FileNotFoundError(f'frame folder missing: {frame_dir}{origin}')
    pattern = template_regex(filename_tmpl)
    indices = sorted(
        int(m.group(1)) for m in map(pattern.match, os.listdir(frame_dir))
        if m)
    if not indices:
        raise FileNotFoundError(
            f'no frames named like {filename_tmpl!r} in {frame_dir}{origin}')
    expected = range(start_index, start_index + len(indices))
    if indices != list(expected):
        missing = sorted(
            set(range(start_index, indices[-1] + 1)) - set(indices))
        raise FileNotFoundError(
            f'missing frames {missing[:10]} in {frame_dir}{origin}: frames '
            f'must be numbered {start_index}..N without gaps')
    return len(indices)


def class_index(entries: List[SplitEntry]) -> Dict[str, int]:
    """Map class names to labels 0..C-1 in sorted order."""
    return {
        name: i
        for i, name in enumerate(sorted({e.class_name
                                         for e in entries}))
    }
