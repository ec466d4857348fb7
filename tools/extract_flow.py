"""Extract optical flow rawframes (MMAction2 layout) from videos or frames.

    python tools/extract_flow.py SRC OUT [--method dis|tvl1|farneback|mmflow]
        [--write-rgb] [--short-side 256 | --resize W H] [--bound 20]
        [--workers N] [--ann-file FILE] [--allow-failures]

SRC: a folder searched recursively for videos (mp4/avi/webm/...) and RGB
frame folders (following symbolic links; hidden entries skipped), a single
video, or a list file (one path per line); finding nothing is an error.

Output: OUT mirrors SRC, one folder per video (``a/b.mp4`` -> ``OUT/a/b/``)
holding ``x_00001.jpg``, ``y_00001.jpg``, ... (flow from frame k to k+1,
quantised: +-BOUND px -> 0..255), ``img_00001.jpg``, ... with
``--write-rgb``, and ``.done.json``, the marker of a finished video (its
source, frame counts and the settings used). ``OUT/annotations.txt`` lists
``frame_dir total_frames label`` (``classes.txt`` names the labels).

Resume: rerun the same command. Videos whose ``.done.json`` records the
same settings are skipped; a video cut off mid-way (a hidden
``.<name>.partial/`` folder marked by ``.partial.json``) is redone;
finished videos made with other settings are extracted again, and the
tool says which settings changed. Ctrl-C stops with a one-line count of
what is done. Nothing the tool did not write is deleted: an output folder
holding files but no marker fails that video, named in the summary.

Methods (time per frame pair at 224x224 on a 2-core CPU, from
benchmarks/FLOW.md): dis (default; OpenCV DIS, medium preset) ~3 ms, the
one to use on a CPU; farneback ~7 ms; tvl1 (OpenCV TV-L1, the flow of
published few-shot results) ~670 ms, ~200 ms with --tvl1-fast: hours for
a dataset without many cores; mmflow (e.g. RAFT) ~500 ms on a CPU, for a
GPU (--device cuda).

Exit status 1 if any video failed (unless --allow-failures), 130 after
Ctrl-C. See ``amfir_mm/flow/extraction.py`` for details.
"""
import argparse
import sys

from amfir_mm.flow.estimators import METHOD_ALIASES
from amfir_mm.flow.extraction import (ExtractionInterrupted, ExtractionOptions,
                                      run_extraction)
from amfir_mm.flow.sources import discover_sources, read_source_list
from amfir_mm.utils.tool import print_header, run_tool

#: The default --method: DIS is ~250x faster than TV-L1 on a CPU.
DEFAULT_METHOD = 'dis'


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='Extract optical flow rawframes for MMAction2',
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split('\n\n', 2)[2])
    parser.add_argument('src', help='folder, video file or list file')
    parser.add_argument('out', help='output root')
    parser.add_argument(
        '--method',
        default=DEFAULT_METHOD,
        choices=sorted(METHOD_ALIASES),
        help=f'flow estimator (default: {DEFAULT_METHOD}; see "Methods" '
        'below for what each costs)')
    parser.add_argument(
        '--preset',
        default='medium',
        choices=['ultrafast', 'fast', 'medium'],
        help='DIS preset (--method dis)')
    parser.add_argument(
        '--tvl1-fast',
        action='store_true',
        help='TV-L1 with nscales=3, warps=3, epsilon=0.02 (about 2x faster)')
    parser.add_argument(
        '--mmflow-config',
        help='MMFlow config (file or '
        'mmflow::raft/raft_8xb2_100k_mixed-368x768.py)')
    parser.add_argument('--mmflow-checkpoint', help='MMFlow weights file')
    parser.add_argument('--device', default='cpu', help='MMFlow device')
    parser.add_argument(
        '--batch-size',
        type=int,
        default=1,
        help='frame pairs per MMFlow forward pass')
    parser.add_argument(
        '--bound',
        type=float,
        default=20.0,
        help='flow quantisation bound in pixels (default 20)')
    parser.add_argument(
        '--write-rgb',
        action='store_true',
        help='also write img_%%05d.jpg RGB frames')
    size = parser.add_mutually_exclusive_group()
    size.add_argument(
        '--resize',
        type=int,
        nargs=2,
        metavar=('W', 'H'),
        help='resize frames to W x H before flow')
    size.add_argument(
        '--short-side',
        type=int,
        help='resize frames to this short side (keep ratio)')
    parser.add_argument('--jpeg-quality', type=int, default=95)
    parser.add_argument(
        '--workers', type=int, default=1, help='worker processes (default 1)')
    parser.add_argument(
        '--src-root',
        help='root of relative paths in a list '
        'file (default: the list file\'s folder)')
    parser.add_argument(
        '--ann-file',
        help='annotation list to write '
        '(default OUT/annotations.txt)')
    parser.add_argument(
        '--no-labels',
        action='store_true',
        help='write "frame_dir total_frames" lines only')
    parser.add_argument(
        '--overwrite',
        action='store_true',
        help='redo videos that are already finished')
    parser.add_argument(
        '--allow-failures',
        action='store_true',
        help='exit with 0 even if some videos failed')
    parser.add_argument('--no-progress', action='store_true')
    return parser.parse_args(argv)


def estimator_config(args) -> dict:
    if args.method == 'dis':
        return dict(type='DISFlowEstimator', preset=args.preset)
    if args.method == 'tvl1' and args.tvl1_fast:
        return dict(type='TVL1FlowEstimator', nscales=3, warps=3, epsilon=0.02)
    if args.method == 'mmflow':
        if not args.mmflow_config or not args.mmflow_checkpoint:
            sys.exit('--method mmflow needs --mmflow-config and '
                     '--mmflow-checkpoint')
        return dict(
            type='MMFlowEstimator',
            config=args.mmflow_config,
            checkpoint=args.mmflow_checkpoint,
            device=args.device,
            batch_size=args.batch_size)
    return dict(type=METHOD_ALIASES[args.method])


def main(argv=None) -> int:
    args = parse_args(argv)
    options = ExtractionOptions(
        bound=args.bound,
        write_rgb=args.write_rgb,
        resize=tuple(args.resize) if args.resize else None,
        short_side=args.short_side,
        jpeg_quality=args.jpeg_quality)
    # no sources, a missing SRC, a bad list file: one line (run_tool)
    if args.src_root:
        sources = read_source_list(args.src, args.src_root)
    else:
        sources = discover_sources(args.src, exclude=args.out)
    print_header('extract_flow', [
        f'{len(sources)} videos / frame folders from {args.src} -> '
        f'{args.out}, method {args.method}, {args.workers} worker(s); '
        'finished videos are skipped (rerun to resume)'
    ])
    try:
        summary = run_extraction(
            args.src,
            args.out,
            estimator_config(args),
            options,
            workers=args.workers,
            ann_file=args.ann_file,
            labels=not args.no_labels,
            overwrite=args.overwrite,
            progress=not args.no_progress,
            sources=sources)
    except ExtractionInterrupted as stop:
        print(
            f'\ninterrupted: {stop.done} of {stop.total} videos done in '
            f'{args.out}; rerun the same command to resume',
            file=sys.stderr)
        return 130
    print(summary.report())
    return 1 if summary.failures and not args.allow_failures else 0


if __name__ == '__main__':
    sys.exit(run_tool(main, 'extract_flow'))
