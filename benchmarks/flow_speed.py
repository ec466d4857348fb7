"""Flow estimator speed and extraction-tool scaling on this machine.

    python benchmarks/flow_speed.py [--pairs 20] [--skip-raft]
        [--out benchmarks/results/flow_speed.json]

1. Frames/s (frame pairs per second) of every estimator at 224x224: median
   over ``--pairs`` consecutive-frame pairs of real ssv2_mini frames resized
   to 224x224 (synthetic moving texture if ../shared is absent), after one
   warm-up pair.
2. Wall time of ``run_extraction`` (what tools/extract_flow.py runs) with 1
   and 2 workers on the same frames (ssv2_mini resized to 224x224), and the
   ratio ``time(1 worker) / time(2 workers)`` (speed-up). One worker runs in
   this process with OpenCV's default thread count (also timed with one
   OpenCV thread); 2 workers are processes forked from a fork server, one
   OpenCV thread each. The fork server starts once per run; its start-up is
   timed separately (``fork_server_startup_s``), not in the 2-worker times.
"""
import argparse
import datetime
import json
import os
import os.path as osp
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

from amfir_mm.flow import build_flow_estimator
from amfir_mm.flow.extraction import ExtractionOptions, run_extraction
from amfir_mm.flow.sources import discover_sources

ROOT = Path(__file__).resolve().parents[1]
SSV2_MINI = ROOT.parent / 'shared' / 'data' / 'ssv2_mini'
SIZE = 224
ESTIMATORS = {
    'DIS ultrafast':
    dict(type='DISFlowEstimator', preset='ultrafast'),
    'DIS fast':
    dict(type='DISFlowEstimator', preset='fast'),
    'DIS medium':
    dict(type='DISFlowEstimator', preset='medium'),
    'Farneback':
    dict(type='FarnebackFlowEstimator'),
    'TV-L1 (OpenCV defaults)':
    dict(type='TVL1FlowEstimator'),
    'TV-L1 fast (nscales=3, warps=3, eps=0.02)':
    dict(type='TVL1FlowEstimator', nscales=3, warps=3, epsilon=0.02),
    'RAFT 12 iters, random weights (CPU)':
    dict(
        type='MMFlowEstimator',
        config='mmflow::raft/raft_8xb2_100k_mixed-368x768.py',
        allow_random_weights=True,
        iters=12),
}


def frame_pairs(num_pairs):
    """``num_pairs`` (frame_t, frame_t+1) RGB pairs at 224x224."""
    pairs = []
    if SSV2_MINI.is_dir():
        for folder in sorted((SSV2_MINI / 'train').glob('*/*')):
            names = sorted(folder.glob('*.jpg'))
            frames = [
                cv2.resize(cv2.imread(str(n))[..., ::-1], (SIZE, SIZE))
                for n in names
            ]
            pairs.extend(zip(frames, frames[1:]))
            if len(pairs) >= num_pairs:
                return pairs[:num_pairs], 'ssv2_mini/train (resized)'
    rng = np.random.default_rng(0)
    texture = cv2.GaussianBlur(
        rng.integers(0, 255, (SIZE, SIZE + num_pairs + 1, 3), np.uint8),
        (0, 0), 2)
    frames = [
        np.ascontiguousarray(texture[:, i:i + SIZE])
        for i in range(num_pairs + 1)
    ]
    return list(zip(frames, frames[1:])), 'synthetic texture'


def time_estimator(cfg, pairs):
    estimator = build_flow_estimator(cfg)
    estimator(*pairs[0])  # warm-up (lazy construction, caches)
    seconds = []
    for frame1, frame2 in pairs:
        start = time.perf_counter()
        estimator(frame1, frame2)
        seconds.append(time.perf_counter() - start)
    median = statistics.median(seconds)
    return dict(
        median_ms_per_pair=round(median * 1e3, 2),
        median_pairs_per_s=round(1 / median, 2),
        min_ms_per_pair=round(min(seconds) * 1e3, 2),
        pairs=len(seconds))


def time_extraction(sources, estimator, workers, opencv_threads=None):
    """Wall time of one extraction run into a temporary folder."""
    default_threads = cv2.getNumThreads()
    if opencv_threads:
        cv2.setNumThreads(opencv_threads)
    try:
        with tempfile.TemporaryDirectory() as out:
            start = time.perf_counter()
            summary = run_extraction(
                '',
                out,
                estimator,
                ExtractionOptions(resize=(SIZE, SIZE)),
                workers=workers,
                progress=False,
                sources=sources)
            seconds = time.perf_counter() - start
    finally:
        cv2.setNumThreads(default_threads)
    assert not summary.failures, summary.report()
    pairs = sum(r.total_frames - 1 for r in summary.results)
    return dict(
        seconds=round(seconds, 2),
        videos=len(summary.results),
        flow_pairs=pairs,
        pairs_per_s=round(pairs / seconds, 1))


def cpu_model():
    try:
        with open('/proc/cpuinfo', encoding='utf-8') as f:
            for line in f:
                if line.startswith('model name'):
                    return line.split(':', 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def time_scaling(report):
    all_sources = discover_sources(str(SSV2_MINI))
    # Start the fork server (once per process) outside the timings.
    startup = time_extraction(all_sources[:2], ESTIMATORS['DIS medium'], 2)
    report['extraction']['fork_server_startup_s'] = startup['seconds']
    jobs = [('DIS medium', all_sources, 'all ssv2_mini (100 videos)'),
            ('TV-L1 fast (nscales=3, warps=3, eps=0.02)', all_sources[:10],
             'first 10 ssv2_mini videos')]
    for name, sources, subset in jobs:
        load = [round(x, 2) for x in os.getloadavg()]
        one = time_extraction(sources, ESTIMATORS[name], 1)
        one_thread = time_extraction(sources, ESTIMATORS[name], 1, 1)
        two = time_extraction(sources, ESTIMATORS[name], 2)
        report['extraction'][name] = dict(
            videos=subset,
            frame_size=f'{SIZE}x{SIZE}',
            load_average_before=load,
            one_worker=one,
            one_worker_one_opencv_thread=one_thread,
            two_workers=two,
            speedup_2w_over_1w=round(one['seconds'] / two['seconds'], 2),
            speedup_2w_over_1w_one_thread=round(
                one_thread['seconds'] / two['seconds'], 2))
        print(name, report['extraction'][name], flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--pairs', type=int, default=20)
    parser.add_argument('--skip-raft', action='store_true')
    parser.add_argument(
        '--out',
        default=str(ROOT / 'benchmarks' / 'results' / 'flow_speed.json'))
    args = parser.parse_args()
    pairs, frames_from = frame_pairs(args.pairs)
    report = dict(
        command='python benchmarks/flow_speed.py ' + ' '.join(sys.argv[1:]),
        date=datetime.datetime.now().isoformat(timespec='seconds'),
        nproc=os.cpu_count(),
        cpu=cpu_model(),
        load_average_at_start=[round(x, 2) for x in os.getloadavg()],
        opencv=cv2.__version__,
        opencv_threads=cv2.getNumThreads(),
        frame_size=f'{SIZE}x{SIZE}',
        frames=frames_from,
        estimators={},
        extraction={})
    for name, cfg in ESTIMATORS.items():
        if args.skip_raft and 'RAFT' in name:
            continue
        report['estimators'][name] = time_estimator(cfg, pairs)
        print(name, report['estimators'][name], flush=True)
    if SSV2_MINI.is_dir():
        time_scaling(report)
    report['load_average_at_end'] = [round(x, 2) for x in os.getloadavg()]
    os.makedirs(osp.dirname(osp.abspath(args.out)), exist_ok=True)
    with open(args.out, 'w', encoding='utf-8') as f:
        json.dump(report, f, indent=2)
    print('wrote', args.out)


if __name__ == '__main__':
    main()
