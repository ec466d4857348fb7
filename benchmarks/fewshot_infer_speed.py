"""Few-shot inference cost per query video (``tools/fewshot_infer.py``).

    python benchmarks/fewshot_infer_speed.py [--queries 10] [--frames 90]
        [--configs DEMO EFFL0] [--threads N]
        [--out benchmarks/results/fewshot_infer_speed.json]

Generated clips (moving shapes, nothing downloaded): 5 classes with one
example clip each, and ``--queries`` query clips, all mp4 (MPEG-4) of
``--frames`` frames, 320x240 at 30 fps.  Per config (random or ImageNet
weights: speed only), one query per call after a warm-up, each time as
wall-clock seconds (``*_s``) and as this process's CPU seconds
(``*_cpu_s``, all its threads):

1. ``per_query``: :meth:`FewShotInferencer.predict` of one query with all
   of the model's modalities (decode, flow, both embeddings, the episode);
2. ``flow``: the part of (1) inside the flow estimator (timed in place);
3. ``embed_rgb`` / ``embed_flow``: one branch's embedding of a query
   (data preprocessor + backbone), measured apart;
4. ``rgb_only_per_query``: ``predict`` with ``modalities=('rgb',)``;
5. ``flow_share``: ``(flow + embed_flow) / per_query``, from CPU times.

Times are medians over the queries; ``fit_s`` is the one-off support
embedding (5 clips).  ``--threads`` sets torch's and OpenCV's threads
(default: theirs); on a machine shared with other jobs, one thread avoids
the stalls of several threads waiting for each other's cores.
"""
import argparse
import json
import os
import os.path as osp
import platform
import statistics
import subprocess
import sys
import tempfile
import time

import cv2
import numpy as np
import torch

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
sys.path.insert(0, ROOT)
DEMO = 'configs/demo/amfir_shapes_1shot_r18.py'
EFFL0 = 'configs/ssv2mini/amfir_ssv2mini_1shot_effl0.py'
WIDTH, HEIGHT, FPS = 320, 240, 30.0


def write_clip(path: str, name: str, seed: int, frames: int) -> str:
    from amfir_mm.datasets.synthetic_shapes import render_video
    shape, motion = name.split('_')
    clip = render_video(shape, motion, np.random.default_rng(seed), frames,
                        HEIGHT)
    writer = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*'mp4v'), FPS,
                             (WIDTH, HEIGHT))
    for frame in clip:
        writer.write(cv2.resize(frame, (WIDTH, HEIGHT)))
    writer.release()
    return path


class Clock:
    """Wall and process CPU seconds spent inside calls of a wrapped
    function, accumulated."""

    def __init__(self, fn=None) -> None:
        self.fn = fn
        self.wall = self.cpu = 0.0

    def __call__(self, *args, **kwargs):
        wall, cpu = time.perf_counter(), time.process_time()
        try:
            return self.fn(*args, **kwargs)
        finally:
            self.wall += time.perf_counter() - wall
            self.cpu += time.process_time() - cpu


def medians(fn, items, clock=None) -> dict:
    """Median wall / CPU seconds of ``fn(item)`` (and of the time inside
    ``clock`` during each call) over ``items``."""
    rows = []
    for item in items:
        if clock is not None:
            clock.wall = clock.cpu = 0.0
        run = Clock(fn)
        run(item)
        rows.append((run.wall, run.cpu) +
                    ((clock.wall, clock.cpu) if clock is not None else ()))
    names = ('s', 'cpu_s', 'inner_s', 'inner_cpu_s')
    return {n: statistics.median(col) for n, col in zip(names, zip(*rows))}


def flow_clock(inferencer) -> Clock:
    """Time the flow estimator of the inferencer's video pipeline in
    place."""
    from amfir_mm.datasets.transforms import ComputeFlow
    from amfir_mm.flow import build_flow_estimator
    clock = Clock()
    for transform in inferencer._compose('decord', True).transforms:
        if isinstance(transform, ComputeFlow):
            clock.fn = build_flow_estimator(transform.estimator_cfg)
            transform._estimator = clock
    return clock


def measure(config: str, support: dict, queries: list) -> dict:
    from amfir_mm.apis import FewShotInferencer
    row = dict(config=config)
    start = time.perf_counter()
    full = FewShotInferencer(osp.join(ROOT, config), None)
    row['build_s'] = time.perf_counter() - start
    start = time.perf_counter()
    full.fit(support)
    row['fit_s'] = time.perf_counter() - start
    clock = flow_clock(full)
    full.predict(queries[:1])  # warm-up
    got = medians(lambda q: full.predict([q]), queries, clock)
    row.update(
        per_query_s=got['s'],
        per_query_cpu_s=got['cpu_s'],
        flow_s=got['inner_s'],
        flow_cpu_s=got['inner_cpu_s'])
    sample = full.load(queries[0])[0]
    for m in full.modalities:
        got = medians(lambda _: full._embed([sample], (m, )), queries)
        row.update({
            f'embed_{m}_s': got['s'],
            f'embed_{m}_cpu_s': got['cpu_s']
        })
    rgb = FewShotInferencer(
        osp.join(ROOT, config), None, modalities=('rgb', )).fit(support)
    rgb.predict(queries[:1])
    got = medians(lambda q: rgb.predict([q]), queries)
    row.update(
        rgb_only_per_query_s=got['s'], rgb_only_per_query_cpu_s=got['cpu_s'])
    row['flow_share'] = (row['flow_cpu_s'] + row['embed_flow_cpu_s']) / \
        row['per_query_cpu_s']
    row['flow_estimator'] = full.flow_estimator
    return {
        k: round(v, 4) if isinstance(v, float) else v
        for k, v in row.items()
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--queries', type=int, default=10)
    parser.add_argument('--frames', type=int, default=90)
    parser.add_argument('--configs', nargs='+', default=[DEMO, EFFL0])
    parser.add_argument(
        '--threads',
        type=int,
        help='torch and OpenCV threads (default: theirs)')
    parser.add_argument(
        '--out',
        default=osp.join(ROOT, 'benchmarks', 'results',
                         'fewshot_infer_speed.json'))
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
        cv2.setNumThreads(args.threads)
    from mmengine.logging import MMLogger

    from amfir_mm.datasets.synthetic_shapes import class_names
    MMLogger.get_instance('fewshot_infer_speed', log_level='WARNING')
    names = class_names()[::5][:5]
    load_start = os.getloadavg()
    wall = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        support = {
            n: [write_clip(osp.join(tmp, f'{n}_s.mp4'), n, i, args.frames)]
            for i, n in enumerate(names)
        }
        queries = [
            write_clip(
                osp.join(tmp, f'q{i}.mp4'), names[i % len(names)], 100 + i,
                args.frames) for i in range(args.queries)
        ]
        rows = []
        for config in args.configs:
            rows.append(measure(config, support, queries))
            print(json.dumps(rows[-1]), flush=True)
    commit = subprocess.run(['git', 'rev-parse', '--short', 'HEAD'],
                            cwd=ROOT,
                            capture_output=True,
                            text=True).stdout.strip()
    out = dict(
        command='python benchmarks/fewshot_infer_speed.py ' +
        ' '.join(sys.argv[1:] if argv is None else argv),
        date=time.strftime('%Y-%m-%d %H:%M'),
        commit=commit,
        machine=f'{platform.machine()}, {os.cpu_count()} CPUs, CPU only, '
        f'torch {torch.__version__}, {torch.get_num_threads()} threads',
        load_average_start=load_start,
        load_average_end=os.getloadavg(),
        wall_s=round(time.perf_counter() - wall, 1),
        setting=f'5 classes x 1 example clip, {args.queries} queries, mp4 '
        f'{WIDTH}x{HEIGHT} {args.frames} frames at {FPS:g} fps, one query '
        'per predict call, medians',
        results=rows)
    os.makedirs(osp.dirname(osp.abspath(args.out)), exist_ok=True)
    with open(args.out, 'w') as f:
        json.dump(out, f, indent=1)
    print(json.dumps(out, indent=1))
    return out


if __name__ == '__main__':
    main()
