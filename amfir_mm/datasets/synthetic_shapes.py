"""A procedurally generated few-shot action dataset: moving shapes.

Each class is a (shape, motion) pair, so classes differ by appearance
(circle, square, triangle, cross) and by motion (left, right, up, down,
grow, orbit); colour, size, start position, speed and the textured
background vary per video.  Videos are written as MMAction2 rawframes
(``<root>/rawframes/<class>/<video>/img_00001.jpg``) with split lists in the
few-shot format (``<root>/splits/{train,val,test}.txt``, lines
``<class>/<video>``), so the demo runs through the same readers as real
data.  Nothing is downloaded, and nothing the generator did not make is
deleted (see :func:`make_shapes_dataset`).
"""
import json
import os
import os.path as osp
import shutil
import tempfile
from typing import Dict, List, Optional, Tuple

import cv2
import numpy as np

from ..utils.io import RefuseOverwriteError

SHAPES = ('circle', 'square', 'triangle', 'cross')
MOTIONS = ('left', 'right', 'up', 'down', 'grow', 'orbit')


def class_names() -> List[str]:
    """All ``len(SHAPES) * len(MOTIONS)`` class names, ``<shape>_<motion>``."""
    return [f'{s}_{m}' for s in SHAPES for m in MOTIONS]


def default_split(names: List[str], seed: int = 0) -> Dict[str, List[str]]:
    """Disjoint meta-train / val / test classes (14 / 5 / 5 of 24)."""
    order = np.random.default_rng(seed).permutation(len(names))
    picked = [names[i] for i in order]
    n_test = n_val = max(5, len(names) // 5)
    return dict(
        train=sorted(picked[:-(n_val + n_test)]),
        val=sorted(picked[-(n_val + n_test):-n_test]),
        test=sorted(picked[-n_test:]))


def _draw_shape(img: np.ndarray, shape: str, center: Tuple[float, float],
                radius: float, color: Tuple[int, int, int]) -> None:
    cx, cy, r = int(round(center[0])), int(round(center[1])), \
        max(2, int(round(radius)))
    if shape == 'circle':
        cv2.circle(img, (cx, cy), r, color, -1, cv2.LINE_AA)
    elif shape == 'square':
        cv2.rectangle(img, (cx - r, cy - r), (cx + r, cy + r), color, -1)
    elif shape == 'triangle':
        pts = np.array([[cx, cy - r], [cx - r, cy + r], [cx + r, cy + r]],
                       np.int32)
        cv2.fillPoly(img, [pts], color, cv2.LINE_AA)
    elif shape == 'cross':
        t = max(1, r // 3)
        cv2.rectangle(img, (cx - r, cy - t), (cx + r, cy + t), color, -1)
        cv2.rectangle(img, (cx - t, cy - r), (cx + t, cy + r), color, -1)
    else:
        raise ValueError(f'unknown shape {shape!r}')


def render_video(shape: str,
                 motion: str,
                 rng: np.random.Generator,
                 num_frames: int = 8,
                 size: int = 64) -> np.ndarray:
    """Render one clip.

    Returns:
        ``(num_frames, size, size, 3)`` uint8 BGR frames.
    """
    noise = rng.integers(0, 256, (size // 8, size // 8, 3), dtype=np.uint8)
    background = cv2.resize(
        noise, (size, size), interpolation=cv2.INTER_CUBIC) // 2 + 40
    color = tuple(int(c) for c in rng.integers(130, 256, 3))
    radius = rng.uniform(0.1, 0.16) * size
    speed = rng.uniform(0.6, 0.8) * size / num_frames
    margin = radius + 2
    start = rng.uniform(margin, size - margin, 2)
    frames = []
    for t in range(num_frames):
        center, r = start.copy(), radius
        step = t - (num_frames - 1) / 2
        if motion == 'left':
            center = (size / 2 - step * speed, start[1])
        elif motion == 'right':
            center = (size / 2 + step * speed, start[1])
        elif motion == 'up':
            center = (start[0], size / 2 - step * speed)
        elif motion == 'down':
            center = (start[0], size / 2 + step * speed)
        elif motion == 'grow':
            center = (size / 2, size / 2)
            r = radius * (0.5 + 1.2 * t / max(1, num_frames - 1))
        elif motion == 'orbit':
            angle = 2 * np.pi * t / num_frames
            center = (size / 2 + 0.25 * size * np.cos(angle),
                      size / 2 + 0.25 * size * np.sin(angle))
        else:
            raise ValueError(f'unknown motion {motion!r}')
        img = background.copy()
        _draw_shape(img, shape, center, r, color)
        frames.append(img)
    return np.stack(frames)


COMPLETE_MARKER = '.complete'  # in a finished dataset: its settings (JSON)
INCOMPLETE_MARKER = '.shapes_dataset_incomplete'  # in the folder being made
_DATASET_ENTRIES = {COMPLETE_MARKER, 'rawframes', 'splits'}


def _marker_settings(root: str) -> Optional[dict]:
    """Settings recorded in a finished dataset (None: an older, empty
    marker)."""
    try:
        with open(osp.join(root, COMPLETE_MARKER), encoding='utf-8') as f:
            return json.load(f)
    except ValueError:
        return None


def _render(folder: str, names: List[str], videos_per_class: int,
            num_frames: int, size: int, seed: int) -> None:
    """Write ``rawframes/`` and ``splits/`` into the (new) ``folder``."""
    os.makedirs(osp.join(folder, 'splits'))
    for split, classes in default_split(names, seed).items():
        lines = []
        for name in classes:
            shape, motion = name.split('_')
            for v in range(videos_per_class):
                rng = np.random.default_rng([seed, names.index(name), v])
                video_dir = osp.join(folder, 'rawframes', name,
                                     f'{name}_{v:03d}')
                os.makedirs(video_dir)
                clip = render_video(shape, motion, rng, num_frames, size)
                for t, frame in enumerate(clip, start=1):
                    if not cv2.imwrite(
                            osp.join(video_dir, f'img_{t:05d}.jpg'), frame):
                        raise OSError(f'cannot write a frame into '
                                      f'{video_dir}')
                lines.append(f'{name}/{name}_{v:03d}')
        with open(osp.join(folder, 'splits', f'{split}.txt'), 'w') as f:
            f.write('\n'.join(lines) + '\n')


def make_shapes_dataset(root: str,
                        videos_per_class: int = 12,
                        num_frames: int = 8,
                        size: int = 64,
                        seed: int = 0,
                        overwrite: bool = False) -> Dict[str, str]:
    """Write the dataset under ``root`` (skipped if already complete).

    Never deletes or overwrites what it did not create. The dataset is
    rendered into the sibling folder ``<root>.partial`` (marked by a
    ``.shapes_dataset_incomplete`` file from its start, so an interrupted
    run's folder is recognised and redone) and renamed to ``root`` when
    complete; ``root/.complete`` then records the settings.  ``root`` may
    be absent or an empty folder; a finished shapes dataset there is reused
    (same settings) or, with ``overwrite``, replaced; anything else is
    refused.

    Returns:
        dict: ``{'train'|'val'|'test': <split file>, 'rawframes': <dir>}``.

    Raises:
        RefuseOverwriteError: ``root`` (or ``<root>.partial``) holds
            something this function did not make, or a shapes dataset with
            other settings and ``overwrite`` is False.
    """
    root = osp.normpath(root)
    out = {
        k: osp.join(root, 'splits', f'{k}.txt')
        for k in ('train', 'val', 'test')
    }
    out['rawframes'] = osp.join(root, 'rawframes')
    settings = dict(
        videos_per_class=videos_per_class,
        num_frames=num_frames,
        size=size,
        seed=seed)
    ours = osp.isfile(osp.join(root, COMPLETE_MARKER))
    if ours and not overwrite:
        made_with = _marker_settings(root)
        if made_with in (None, settings):
            return out
        raise RefuseOverwriteError(
            f'{root} holds a shapes dataset made with {made_with}, not '
            f'{settings}: pass overwrite=True (--overwrite) to replace it, '
            'or choose another folder')
    if osp.lexists(root):
        entries = set(os.listdir(root)) if osp.isdir(root) and \
            not osp.islink(root) else None
        if entries is None or entries and not (ours and entries
                                               <= _DATASET_ENTRIES):
            raise RefuseOverwriteError(
                f'{root} exists and is not an empty folder or a shapes '
                f'dataset made by this tool (no {COMPLETE_MARKER} marker, '
                'other files in it, or not a plain folder); refusing to '
                'write there: choose a new or empty folder')
    partial = root + '.partial'
    if osp.lexists(partial):
        if not osp.isfile(osp.join(partial, INCOMPLETE_MARKER)) or \
                osp.islink(partial):
            raise RefuseOverwriteError(
                f'{partial} exists and was not made by this tool (no '
                f'{INCOMPLETE_MARKER} marker); refusing to delete it')
        shutil.rmtree(partial)  # an interrupted run's folder
    os.makedirs(partial)
    open(osp.join(partial, INCOMPLETE_MARKER), 'w').close()
    _render(partial, class_names(), videos_per_class, num_frames, size, seed)
    with open(osp.join(partial, COMPLETE_MARKER), 'w') as f:
        json.dump(settings, f)
    os.remove(osp.join(partial, INCOMPLETE_MARKER))
    if not osp.exists(root):
        os.rename(partial, root)
    elif not os.listdir(root):
        os.rmdir(root)  # an empty folder: nothing is lost
        os.rename(partial, root)
    else:  # overwrite our own finished dataset
        trash = tempfile.mkdtemp(
            prefix=osp.basename(root) + '.replaced-',
            dir=osp.dirname(osp.abspath(root)))
        os.rename(root, osp.join(trash, 'old'))
        os.rename(partial, root)
        shutil.rmtree(trash)
    return out
