"""Flow estimator speed and extraction-tool scaling on this machine.

    python benchmarks/flow_speed.py [--pairs 20] [--skip-raft]
        [--out benchmarks/flow_speed.json]

1. Frames/s (frame pairs per second) of every estimator at 224x224: median
   over ``--pairs`` consecutive-frame pairs of real ssv2_mini frames resized
   to 224x224 (synthetic moving texture if ../shared is absent), after one
   warm-up pair.
2. Wall time of ``run_extraction`` (what tools/extract_flow.py runs) with 1
   and 2 workers on the same frames (ssv2_mini resized to 224x224), and the
   ratio ``time(1 worker) / time(2 workers)`` (speed-up).
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


def time_extraction(sources, estimator, workers):
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
    assert not summary.failures, summary.report()
    pairs = sum(r.total_frames - 1 for r in summary.results)
    return dict(
        seconds=round(seconds, 2),
        videos=len(summary.results),
        flow_pairs=pairs,
        pairs_per_s=round(pairs / seconds, 1))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--pairs', type=int, default=20)
    parser.add_argument('--skip-raft', action='store_true')
    parser.add_argument(
        '--out', default=str(ROOT / 'benchmarks' / 'flow_speed.json'))
    args = parser.parse_args()
    pairs, frames_from = frame_pairs(args.pairs)
    report = dict(
        command='python benchmarks/flow_speed.py ' + ' '.join(sys.argv[1:]),
        date=datetime.datetime.now().isoformat(timespec='seconds'),
        nproc=os.cpu_count(),
        cpu=platform.processor() or platform.machine(),
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
        all_sources = discover_sources(str(SSV2_MINI))
        jobs = [('DIS medium', all_sources, 'all ssv2_mini (100 videos)'),
                ('TV-L1 fast (nscales=3, warps=3, eps=0.02)', all_sources[:20],
                 'first 20 ssv2_mini videos')]
        for name, sources, subset in jobs:
            runs = {
                w: time_extraction(sources, ESTIMATORS[name], w)
                for w in (1, 2)
            }
            report['extraction'][name] = dict(
                videos=subset,
                frame_size=f'{SIZE}x{SIZE}',
                one_worker=runs[1],
                two_workers=runs[2],
                speedup_2w_over_1w=round(
                    runs[1]['seconds'] / runs[2]['seconds'], 2))
            print(name, report['extraction'][name], flush=True)
    report['load_average_at_end'] = [round(x, 2) for x in os.getloadavg()]
    os.makedirs(osp.dirname(osp.abspath(args.out)), exist_ok=True)
    with open(args.out, 'w', encoding='utf-8') as f:
        json.dump(report, f, indent=2)
    print('wrote', args.out)


if __name__ == '__main__':
    main()
