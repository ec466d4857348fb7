"""Convert videos / frame folders into MMAction2 flow rawframes.

For each source (see :mod:`amfir_mm.flow.sources`) the output folder
``OUT/<rel_out>/`` gets ``x_%05d.jpg`` / ``y_%05d.jpg`` (flow from frame i to
frame i+1, i = 1..N-1, quantised by :func:`quantize_flow`) and, with
``write_rgb``, ``img_%05d.jpg`` (i = 1..N), i.e. MMAction2's rawframe layout.

Resumable: a video is written into ``OUT/<parent>/.<name>.partial/`` and
renamed to its final name when complete; the folder then holds a
``.done.json`` marker (source, frame counts, settings). A run skips videos
whose marker records the same estimator and options, and redoes what it
wrote itself: half-written temp folders (marked by ``.partial.json`` from
their start) and finished videos made with other settings. It deletes
nothing it did not write: an output or temp folder that holds files but no
marker fails that video with a message naming the folder (counted in the
summary). Two runs must not write into the same OUT at once.

Failures (unreadable video, too few frames, ...) are caught per video,
reported with the path and the reason, and counted; the other videos go on.
"""
import json
import logging
import multiprocessing
import os
import os.path as osp
import shutil
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from dataclasses import asdict, dataclass, field
from typing import List, Optional, Sequence, Tuple

import cv2
import numpy as np

from ..utils.io import NoVideosFoundError
from .annotations import write_annotations
from .estimators import (BaseFlowEstimator, FlowEstimatorCfg,
                         build_flow_estimator)
from .quantization import DEFAULT_FLOW_BOUND, quantize_flow
from .sources import (FlowSource, FrameReadError, discover_sources,
                      frame_readers)

DONE_MARKER = '.done.json'
#: Written into a temp folder when it is created (what a rerun may redo).
PARTIAL_MARKER = '.partial.json'
RGB_TMPL = 'img_{:05d}.jpg'
FLOW_TMPL = '{}_{:05d}.jpg'


@dataclass(frozen=True)
class ExtractionOptions:
    """How frames are written.

    Attributes:
        bound (float): Flow quantisation bound in pixels (20 in MMAction2).
        write_rgb (bool): Also write ``img_%05d.jpg`` RGB frames.
        resize (tuple[int, int], optional): Resize frames to
            ``(width, height)`` before computing flow.
        short_side (int, optional): Or resize so the short side has this
            many pixels, keeping the aspect ratio.
        jpeg_quality (int): JPEG quality (0..100) of written frames.
    """
    bound: float = DEFAULT_FLOW_BOUND
    write_rgb: bool = False
    resize: Optional[Tuple[int, int]] = None
    short_side: Optional[int] = None
    jpeg_quality: int = 95

    def __post_init__(self):
        if self.resize is not None and self.short_side is not None:
            raise ValueError('use either resize or short_side, not both')
        if self.resize is not None and (len(self.resize) != 2
                                        or min(self.resize) < 1):
            raise ValueError(f'resize must be (width, height) > 0, got '
                             f'{self.resize}')
        if self.short_side is not None and self.short_side < 1:
            raise ValueError(f'short_side must be > 0, got {self.short_side}')
        if not self.bound > 0:
            raise ValueError(f'bound must be > 0 pixels, got {self.bound}')

    def resize_frame(self, frame: np.ndarray) -> np.ndarray:
        """Apply ``resize`` / ``short_side`` (bilinear) to an RGB frame."""
        height, width = frame.shape[:2]
        if self.resize is not None:
            size = tuple(int(v) for v in self.resize)
        elif self.short_side is not None:
            scale = self.short_side / min(height, width)
            size = (max(1, round(width * scale)), max(1,
                                                      round(height * scale)))
        else:
            return frame
        if size == (width, height):
            return frame
        return cv2.resize(frame, size, interpolation=cv2.INTER_LINEAR)

    def fingerprint(self, estimator: BaseFlowEstimator) -> dict:
        """What a finished video must have been made with to be skipped."""
        settings = asdict(self)
        settings['resize'] = list(self.resize) if self.resize else None
        settings['estimator'] = repr(estimator)
        return settings


@dataclass
class VideoResult:
    """Outcome for one source: ``status`` is done, skipped or failed."""
    source: FlowSource
    status: str
    total_frames: int = 0
    error: str = ''
    seconds: float = 0.0


@dataclass
class ExtractionSummary:
    """All results of a run plus the annotation files written."""
    results: List[VideoResult]
    ann_files: List[str] = field(default_factory=list)
    seconds: float = 0.0

    def count(self, status: str) -> int:
        return sum(r.status == status for r in self.results)

    @property
    def failures(self) -> List[VideoResult]:
        return [r for r in self.results if r.status == 'failed']

    def report(self) -> str:
        lines = [
            f'{len(self.results)} videos in {self.seconds:.1f} s: '
            f'{self.count("done")} extracted, {self.count("skipped")} '
            f'already done (skipped), {self.count("failed")} failed'
        ]
        for result in self.failures:
            lines.append(f'  FAILED {result.source.path}: {result.error}')
        lines.extend(f'annotations: {path}' for path in self.ann_files)
        return '\n'.join(lines)


def _inside(path: str, folder: str) -> bool:
    """Whether ``path`` is ``folder`` or lies inside it."""
    path, folder = osp.realpath(path), osp.realpath(folder)
    return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)


def read_done_marker(folder: str) -> Optional[dict]:
    """The ``.done.json`` of a finished output folder, or None."""
    try:
        with open(osp.join(folder, DONE_MARKER), encoding='utf-8') as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


class ExtractionInterrupted(KeyboardInterrupt):
    """Ctrl-C during :func:`run_extraction`: ``done`` of ``total`` videos
    are finished in OUT (a rerun skips them); the video being written is
    left as a ``.partial`` folder that a rerun redoes."""

    def __init__(self, done: int, total: int) -> None:
        super().__init__(f'interrupted: {done} of {total} videos done')
        self.done, self.total = done, total


def changed_settings(old: dict, new: dict) -> dict:
    """The settings (``.done.json``'s ``settings``) that differ:
    ``{key: (old value, new value)}``."""
    return {
        key: (old.get(key), new.get(key))
        for key in sorted(set(old) | set(new)) if old.get(key) != new.get(key)
    }


def _report_changed_settings(sources, out_root: str, todo: List[int],
                             fingerprint: dict) -> Optional[str]:
    """One line saying why finished videos are extracted again (their
    marker records other settings), or None."""
    changes, count = {}, 0
    for i in todo:
        marker = read_done_marker(
            osp.join(out_root, *sources[i].rel_out.split('/')))
        if marker is not None and isinstance(marker.get('settings'), dict):
            count += 1
            for key, values in changed_settings(marker['settings'],
                                                fingerprint).items():
                changes.setdefault(key, values)
    if not count:
        return None
    what = '; '.join(f'{key}: {old} -> {new}'
                     for key, (old, new) in changes.items())
    return (f're-extracting {count} finished video'
            f'{"" if count == 1 else "s"} made with other settings ({what})'
            '; to keep the old output, stop (Ctrl-C) and rerun with the old '
            'settings')


def finished_result(source: FlowSource, out_root: str,
                    fingerprint: dict) -> Optional[VideoResult]:
    """A 'skipped' result if the source's output is finished with the same
    settings, else None."""
    marker = read_done_marker(osp.join(out_root, *source.rel_out.split('/')))
    if marker is not None and marker.get('settings') == fingerprint:
        return VideoResult(source, 'skipped', marker['total_frames'])
    return None


def _not_ours(folder: str) -> Optional[str]:
    """Why ``folder`` may not be deleted, or None if it may: it does not
    exist, is empty, or holds the extractor's own marker (``.done.json`` or
    ``.partial.json``)."""
    if not osp.lexists(folder):
        return None
    if osp.isdir(folder) and not osp.islink(folder):
        names = os.listdir(folder)
        if not names or DONE_MARKER in names or PARTIAL_MARKER in names:
            return None
    return (f'{folder} exists and was not written by the extractor (no '
            f'{DONE_MARKER} or {PARTIAL_MARKER}); it is left as it is: '
            'move it away or choose another OUT')


def _write_jpeg(path: str, image: np.ndarray, quality: int) -> None:
    if not cv2.imwrite(path, image, [cv2.IMWRITE_JPEG_QUALITY, quality]):
        raise OSError(f'cannot write {path}')


def _convert(frames, folder: str, estimator: BaseFlowEstimator,
             options: ExtractionOptions, where: str) -> int:
    """Write flow (and RGB) of a frame stream into ``folder``.

    Returns:
        int: The number of RGB frames read.
    """
    firsts, seconds = [], []
    num_frames = num_flows = 0
    first_shape = previous = None

    def flush():
        nonlocal num_flows
        for flow in estimator.estimate_pairs(firsts, seconds):
            num_flows += 1
            for axis, image in zip('xy', quantize_flow(flow, options.bound)):
                _write_jpeg(
                    osp.join(folder, FLOW_TMPL.format(axis, num_flows)), image,
                    options.jpeg_quality)
        firsts.clear()
        seconds.clear()

    for frame in frames:
        frame = options.resize_frame(frame)
        num_frames += 1
        if first_shape is None:
            first_shape = frame.shape
        elif frame.shape != first_shape:
            raise FrameReadError(
                f'{where}: frame {num_frames} is {frame.shape[1]}x'
                f'{frame.shape[0]} but frame 1 is {first_shape[1]}x'
                f'{first_shape[0]}; pass a fixed resize')
        if options.write_rgb:
            _write_jpeg(
                osp.join(folder, RGB_TMPL.format(num_frames)),
                np.ascontiguousarray(frame[..., ::-1]), options.jpeg_quality)
        if previous is not None:
            firsts.append(previous)
            seconds.append(frame)
            if len(firsts) >= max(1, estimator.batch_size):
                flush()
        previous = frame
    if firsts:
        flush()
    if num_frames < 2:
        raise FrameReadError(f'{where}: {num_frames} frame(s) readable; '
                             'flow needs at least 2')
    return num_frames


def extract_video(source: FlowSource,
                  out_root: str,
                  estimator: BaseFlowEstimator,
                  options: ExtractionOptions = ExtractionOptions(),
                  overwrite: bool = False) -> VideoResult:
    """Extract one source into ``out_root/source.rel_out`` (resumable).

    Never raises for a bad source: the failure is returned in the result.
    """
    start = time.monotonic()
    final = osp.join(out_root, *source.rel_out.split('/'))
    fingerprint = options.fingerprint(estimator)
    if not overwrite:
        finished = finished_result(source, out_root, fingerprint)
        if finished is not None:
            return finished
    if source.kind == 'missing':
        return VideoResult(source, 'failed', error='does not exist')
    if _inside(source.path, final):
        return VideoResult(
            source,
            'failed',
            error=f'output folder {final} would replace '
            'the source; choose an OUT outside the source folders')
    temp = osp.join(osp.dirname(final), f'.{osp.basename(final)}.partial')
    for folder in (final, temp):
        refused = _not_ours(folder)
        if refused:
            return VideoResult(source, 'failed', error=refused)
    errors = []
    for reader_name, make_frames in frame_readers(source):
        shutil.rmtree(temp, ignore_errors=True)
        os.makedirs(temp)
        with open(osp.join(temp, PARTIAL_MARKER), 'w', encoding='utf-8') as f:
            json.dump(dict(source=source.path), f)
        try:
            num_frames = _convert(make_frames(), temp, estimator, options,
                                  source.path)
        except FrameReadError as err:
            errors.append(f'{reader_name}: {err}')
            continue
        except Exception as err:  # estimator / disk errors: no other reader
            shutil.rmtree(temp, ignore_errors=True)
            return VideoResult(
                source,
                'failed',
                error=f'{type(err).__name__}: {err}',
                seconds=time.monotonic() - start)
        seconds = time.monotonic() - start
        with open(osp.join(temp, DONE_MARKER), 'w', encoding='utf-8') as f:
            json.dump(
                dict(
                    source=source.path,
                    reader=reader_name,
                    total_frames=num_frames,
                    flow_frames=num_frames - 1,
                    settings=fingerprint,
                    seconds=round(seconds, 3)),
                f,
                indent=1)
        os.remove(osp.join(temp, PARTIAL_MARKER))
        refused = _not_ours(final)  # written meanwhile by someone else
        if refused:
            shutil.rmtree(temp)
            return VideoResult(
                source, 'failed', error=refused, seconds=seconds)
        if osp.lexists(final):
            shutil.rmtree(final)
        os.rename(temp, final)  # the commit point
        return VideoResult(source, 'done', num_frames, seconds=seconds)
    shutil.rmtree(temp, ignore_errors=True)
    return VideoResult(
        source,
        'failed',
        error='; '.join(errors),
        seconds=time.monotonic() - start)


# Per-process state of worker processes (built once by the initializer).
_WORKER = {}


def _init_worker(estimator_cfg, out_root, options, overwrite, threads):
    cv2.setNumThreads(threads)
    if 'torch' in sys.modules:
        sys.modules['torch'].set_num_threads(threads)
    _WORKER.update(
        estimator=build_flow_estimator(estimator_cfg),
        out_root=out_root,
        options=options,
        overwrite=overwrite)


def _worker_task(source: FlowSource) -> VideoResult:
    return extract_video(source, _WORKER['out_root'], _WORKER['estimator'],
                         _WORKER['options'], _WORKER['overwrite'])


def _run_parallel(sources, estimator_cfg, out_root, options, overwrite,
                  workers, bar) -> List[VideoResult]:
    threads = max(1, (os.cpu_count() or 1) // workers)
    # Not 'fork': forking a process that runs threads (OpenCV, torch, the
    # executor's manager thread) can deadlock children on locks copied in a
    # held state, and CUDA cannot be used after fork. A fork server is
    # single-threaded, imports this module once, then forks workers cheaply.
    context = multiprocessing.get_context('forkserver')
    context.set_forkserver_preload([__name__])
    results = {}
    try:
        with ProcessPoolExecutor(
                workers,
                mp_context=context,
                initializer=_init_worker,
                initargs=(estimator_cfg, out_root, options, overwrite,
                          threads)) as pool:
            futures = {
                pool.submit(_worker_task, s): i
                for i, s in enumerate(sources)
            }
            for future in as_completed(futures):
                results[futures[future]] = future.result()
                if bar is not None:
                    bar.update()
    except BrokenProcessPool:
        pass  # reported below for every unfinished source
    return [
        results.get(i) or VideoResult(
            s,
            'failed',
            error='worker process died (killed or crashed); '
            'rerun to resume') for i, s in enumerate(sources)
    ]


def run_extraction(src: str,
                   out: str,
                   estimator: FlowEstimatorCfg = None,
                   options: ExtractionOptions = ExtractionOptions(),
                   workers: int = 1,
                   ann_file: Optional[str] = None,
                   labels: bool = True,
                   overwrite: bool = False,
                   progress: bool = True,
                   sources: Optional[Sequence[FlowSource]] = None
                   ) -> ExtractionSummary:
    """Extract flow rawframes for every video under ``src`` into ``out``.

    Args:
        src (str): Folder (searched recursively), video file or list file.
        out (str): Output root; mirrors ``src``'s relative paths.
        estimator: Flow estimator config (see :func:`build_flow_estimator`;
            ``None`` = TV-L1).
        options (ExtractionOptions): Bound, RGB, resizing, JPEG quality.
        workers (int): Processes; 1 runs in this process.
        ann_file (str, optional): Annotation list to write (default
            ``out/annotations.txt``), see :func:`write_annotations`.
        labels (bool): Write a label column.
        overwrite (bool): Redo finished videos too.
        progress (bool): Show an MMEngine progress bar.
        sources (list[FlowSource], optional): Use these instead of
            discovering them under ``src``.

    Returns:
        ExtractionSummary: Per-video results (failures included).

    A finished video whose ``.done.json`` records other settings is
    extracted again, with a warning naming the settings that changed.

    Raises:
        FileNotFoundError: no video or frame folder to extract
            (:class:`~amfir_mm.utils.io.NoVideosFoundError`), or ``src``
            does not exist.
        ExtractionInterrupted: Ctrl-C; it counts the finished videos.
    """
    from mmengine.logging import print_log
    from mmengine.utils import ProgressBar
    start = time.monotonic()
    # Build once here so a bad config fails before any work starts.
    built = build_flow_estimator(estimator)
    if src and osp.isdir(src) and _inside(src, out):
        raise ValueError(f'OUT ({out}) must not be SRC ({src}) or contain it')
    if sources is None:
        sources = discover_sources(src, exclude=out)
    if not sources:
        raise NoVideosFoundError(
            f'no videos or frame folders found in {src or "the source list"}')
    os.makedirs(out, exist_ok=True)
    # Finished videos are skipped here, so a resumed run only starts
    # workers for what is left.
    fingerprint = options.fingerprint(built)
    results = [
        None if overwrite else finished_result(s, out, fingerprint)
        for s in sources
    ]
    todo = [i for i, result in enumerate(results) if result is None]
    why = None if overwrite else _report_changed_settings(
        sources, out, todo, fingerprint)
    if why:
        print_log(why, logger='current', level=logging.WARNING)
    bar = ProgressBar(len(todo)) if progress and todo else None
    try:
        if workers <= 1 or len(todo) <= 1:
            for i in todo:
                results[i] = extract_video(sources[i], out, built, options,
                                           overwrite)
                if bar is not None:
                    bar.update()
        elif todo:
            cfg = built if estimator is None or isinstance(
                estimator, BaseFlowEstimator) else estimator
            done = _run_parallel([sources[i] for i in todo], cfg, out, options,
                                 overwrite, workers, bar)
            for i, result in zip(todo, done):
                results[i] = result
    except KeyboardInterrupt:
        finished = sum(
            finished_result(s, out, fingerprint) is not None for s in sources)
        raise ExtractionInterrupted(finished, len(sources)) from None
    if bar is not None:
        bar.file.write('\n')
    summary = ExtractionSummary(results)
    summary.ann_files = write_annotations(
        results, out, ann_file or osp.join(out, 'annotations.txt'), labels)
    summary.seconds = time.monotonic() - start
    return summary
