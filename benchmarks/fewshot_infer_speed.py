"""Few-shot inference cost per query video (``tools/fewshot_infer.py``).

    python benchmarks/fewshot_infer_speed.py [--queries 10] [--frames 90]
        [--configs DEMO EFFL0]
        [--out benchmarks/results/fewshot_infer_speed.json]

Generated clips (moving shapes, nothing downloaded): 5 classes with one
example clip each, and ``--queries`` query clips, all mp4 (MPEG-4) of
``--frames`` frames, 320x240 at 30 fps.  Per config (random or ImageNet
weights: speed only), on the CPU, one query at a time after a warm-up:

1. ``per_query_s``: :meth:`FewShotInferencer.predict` of one query, all
   of the model's modalities (decode, flow, both embeddings, the episode);
2. its parts, measured apart on the same queries: ``load_rgb_s`` (decode
   and transforms without flow), ``flow_s`` (the RGB + flow load minus
   ``load_rgb_s``: the flow estimator plus decoding the frames each flow
   pair needs), ``embed_rgb_s`` / ``embed_flow_s`` (each branch's backbone
   on the query);
3. ``rgb_only_per_query_s``: ``predict`` with ``modalities=('rgb',)``;
4. ``flow_share``: ``(flow_s + embed_flow_s) / per_query_s``.

Times are medians over the queries; ``fit_s`` is the one-off support
embedding (5 clips).
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
DEMO = 'configs/demo/shapes_amfir_r18_5way1shot.py'
EFFL0 = 'configs/ssv2mini/amfir_effl0_112_5way1shot.py'
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


def median_time(fn, items) -> float:
    times = []
    for item in items:
        start = time.perf_counter()
        fn(item)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def measure(config: str, support: dict, queries: list) -> dict:
    from amfir_mm.apis import FewShotInferencer
    row = dict(config=config)
    start = time.perf_counter()
    full = FewShotInferencer(osp.join(ROOT, config), None)
    row['build_s'] = round(time.perf_counter() - start, 2)
    start = time.perf_counter()
    full.fit(support)
    row['fit_s'] = round(time.perf_counter() - start, 2)
    full.predict(queries[:1])  # warm-up
    row['per_query_s'] = median_time(lambda q: full.predict([q]), queries)
    rgb = FewShotInferencer(osp.join(ROOT, config), None,
                            modalities=('rgb', )).fit(support)
    rgb.predict(queries[:1])
    row['rgb_only_per_query_s'] = median_time(lambda q: rgb.predict([q]),
                                              queries)
    row['load_rgb_s'] = median_time(rgb.load, queries)
    row['load_rgb_flow_s'] = median_time(full.load, queries)
    row['flow_s'] = row['load_rgb_flow_s'] - row['load_rgb_s']
    sample = full.load(queries[0])[0]
    for m in full.modalities:
        row[f'embed_{m}_s'] = median_time(
            lambda _: full._embed([sample], (m, )), queries)
    row['flow_share'] = (row['flow_s'] + row.get('embed_flow_s', 0)) / \
        row['per_query_s']
    row['flow_estimator'] = full.flow_estimator
    return {k: round(v, 4) if isinstance(v, float) else v
            for k, v in row.items()}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--queries', type=int, default=10)
    parser.add_argument('--frames', type=int, default=90)
    parser.add_argument('--configs', nargs='+', default=[DEMO, EFFL0])
    parser.add_argument(
        '--out', default=osp.join(ROOT, 'benchmarks', 'results',
                                  'fewshot_infer_speed.json'))
    args = parser.parse_args(argv)
    from amfir_mm.datasets.synthetic_shapes import class_names
    from mmengine.logging import MMLogger
    MMLogger.get_instance('fewshot_infer_speed', log_level='WARNING')
    names = class_names()[::5][:5]
    load_start = os.getloadavg()
    wall = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        support = {n: [write_clip(osp.join(tmp, f'{n}_s.mp4'), n, i,
                                  args.frames)]
                   for i, n in enumerate(names)}
        queries = [write_clip(osp.join(tmp, f'q{i}.mp4'),
                              names[i % len(names)], 100 + i, args.frames)
                   for i in range(args.queries)]
        rows = []
        for config in args.configs:
            rows.append(measure(config, support, queries))
            print(json.dumps(rows[-1]), flush=True)
    commit = subprocess.run(['git', 'rev-parse', '--short', 'HEAD'],
                            cwd=ROOT, capture_output=True,
                            text=True).stdout.strip()
    out = dict(
        command='python benchmarks/fewshot_infer_speed.py ' + ' '.join(
            sys.argv[1:] if argv is None else argv),
        date=time.strftime('%Y-%m-%d %H:%M'), commit=commit,
        machine=f'{platform.machine()}, {os.cpu_count()} CPUs, CPU only, '
        f'torch {torch.__version__}, {torch.get_num_threads()} threads',
        load_average_start=load_start, load_average_end=os.getloadavg(),
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
