"""Recognise your own actions: label new videos from a few example clips.

    python tools/fewshot_infer.py CONFIG CHECKPOINT|none --support DIR \\
        --query PATH [PATH ...] [--out results.json] [--device cpu|cuda] \\
        [--modalities rgb] [--flow dis|tvl1|farneback] [--skip-unreadable]

``DIR/<class name>/`` holds each action's example clips: video files
(mp4/avi/webm/mkv/...) or folders of frames (JPEG/PNG numbered in order).
A ``--query`` PATH is a video, a frame folder, or a folder of those.
Prints a table (query, predicted class, its probability, the modality
reliabilities pi) and, with ``--out``, writes ``{"classes": [...],
"predictions": [...], "errors": [...]}`` (see
:meth:`amfir_mm.apis.FewShotInferencer.predict` for the fields).

``CHECKPOINT`` ``none`` uses the config's initial weights (e.g. the
ImageNet backbones of ``configs/ssv2mini/amfir_ssv2mini_1shot_effl0.py``).
``--modalities rgb`` uses the RGB branch alone and computes no flow (as
for a one-frame query, whose flow cannot be computed).

Exit status: 0 when every query was labelled; 1 when some query could not
be read (each is named on stderr, the others are still labelled and
written); a problem with the support set (an empty class folder, an
unreadable clip, ...) or a single unreadable query stops at once with one
line naming it.
"""
import argparse
import json
import logging
import os.path as osp
import sys

from mmengine.logging import MMLogger

from amfir_mm.apis import (FewShotInferencer, FrameReadError, find_clips,
                           read_support_dir)
from amfir_mm.flow import UnsupportedDeviceError
from amfir_mm.flow.sources import list_frame_files
from amfir_mm.utils.io import RefuseOverwriteError
from amfir_mm.utils.tool import plural, print_header, run_tool

#: More queries than this get a progress bar.
PROGRESS_ABOVE = 3


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='Label new videos from a few example clips per action',
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split('\n\n', 2)[2])
    parser.add_argument('config', help='an amfir-mm config file')
    parser.add_argument(
        'checkpoint', help='checkpoint of that config, or "none"')
    parser.add_argument(
        '--support',
        required=True,
        metavar='DIR',
        help='DIR/<class name>/ holds example clips')
    parser.add_argument(
        '--query',
        required=True,
        nargs='+',
        metavar='PATH',
        help='videos, frame folders or folders of those')
    parser.add_argument('--out', help='write the predictions (JSON) here')
    parser.add_argument(
        '--overwrite',
        action='store_true',
        help='replace an existing --out file')
    parser.add_argument(
        '--device', default='cpu', help='cpu, cuda or cuda:N (default: cpu)')
    parser.add_argument(
        '--modalities',
        nargs='+',
        choices=['rgb', 'flow'],
        help='use only these branches (default: all the '
        'model has); rgb: no flow is computed')
    parser.add_argument(
        '--flow',
        choices=['dis', 'farneback', 'tvl1'],  # OpenCV's (MMFlow: API)
        help='flow estimator (default: the config\'s, '
        'else dis)')
    parser.add_argument(
        '--skip-unreadable',
        action='store_true',
        help='leave out unreadable support clips (counted '
        'in the log) instead of stopping')
    parser.add_argument(
        '--batch-size', type=int, default=8, help='videos per backbone call')
    return parser.parse_args(argv)


def expand_queries(paths):
    """Each PATH as given, or, for a folder that is not itself a frame
    folder, the clips in it (see :func:`amfir_mm.apis.find_clips`)."""
    queries = []
    for path in paths:
        if osp.isdir(path) and not list_frame_files(path):
            clips, _ = find_clips(path)
            if clips:
                queries += clips
                continue
        queries.append(path)
    return queries


def format_table(predictions, errors):
    """The printed result: one row per query."""
    rows = [('query', 'predicted', 'prob', 'pi_rgb', 'pi_flow')]
    for p in predictions:
        rows.append((p['query'], p['label'], f'{p["scores"][p["label"]]:.3f}',
                     f'{p["reliability"]["rgb"]:.2f}',
                     f'{p["reliability"]["flow"]:.2f}'))
    for e in errors:
        rows.append((e['query'], 'UNREADABLE', '-', '-', '-'))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return '\n'.join('  '.join(cell.ljust(w)
                               for cell, w in zip(r, widths)).rstrip()
                     for r in rows)


def main(argv=None):
    args = parse_args(argv)
    if args.out and osp.exists(args.out) and not args.overwrite:
        raise RefuseOverwriteError(f'{args.out} exists; pass --overwrite '
                                   'to replace it')
    # the tool's own report is the table: keep MMEngine's logs to warnings
    MMLogger.get_instance('fewshot_infer', log_level=logging.WARNING)
    support = read_support_dir(args.support)
    queries = expand_queries(args.query)
    checkpoint = None if args.checkpoint.lower() == 'none' else \
        args.checkpoint
    inferencer = FewShotInferencer(
        args.config,
        checkpoint,
        device=args.device,
        modalities=args.modalities,
        flow_estimator=args.flow,
        batch_size=args.batch_size)
    counts = ', '.join(f'{c} ({len(v)})' for c, v in support.items())
    print_header('fewshot_infer', [
        f'{plural(len(support), "class")} (example clips): {counts}',
        f'{plural(len(queries), "query", "queries")}; modalities: '
        f'{", ".join(inferencer.modalities)}' +
        (f'; flow: {inferencer.flow_estimator["type"]}'
         if 'flow' in inferencer.modalities else '')
    ])
    inferencer.fit(
        support,
        skip_unreadable=args.skip_unreadable,
        progress=sum(map(len, support.values())) > PROGRESS_ABOVE)
    results = inferencer.predict(
        queries, on_error='report', progress=len(queries) > PROGRESS_ABOVE)
    predictions = [r for r in results if 'error' not in r]
    errors = [r for r in results if 'error' in r]
    if len(errors) == 1 and not predictions:
        raise FrameReadError(errors[0]['error'])
    for e in errors:
        print(f'error: {e["error"]}', file=sys.stderr)
    if not predictions:
        raise FrameReadError(f'none of the {len(errors)} queries could be '
                             'read')
    print(format_table(predictions, errors))
    if args.out:
        with open(args.out, 'w') as f:
            json.dump(
                dict(
                    classes=inferencer.classes,
                    predictions=predictions,
                    errors=errors),
                f,
                indent=1)
        print(f'wrote {args.out}')
    return 1 if errors else 0


if __name__ == '__main__':
    # bad input or no such device: one line
    sys.exit(
        run_tool(
            main, 'fewshot_infer', usage_errors=(UnsupportedDeviceError, )))
