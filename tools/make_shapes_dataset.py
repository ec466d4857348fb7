"""Generate the moving-shapes few-shot dataset (no download needed).

    python tools/make_shapes_dataset.py data/shapes [--videos-per-class 12]

ROOT must be new, an empty folder or a shapes dataset made by this tool
(reused, or replaced with ``--overwrite``); anything else is refused.
"""
import argparse
import sys

from amfir_mm.datasets.synthetic_shapes import make_shapes_dataset
from amfir_mm.utils.tool import run_tool


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument('root', help='output folder')
    parser.add_argument('--videos-per-class', type=int, default=12)
    parser.add_argument('--frames', type=int, default=8)
    parser.add_argument('--size', type=int, default=64, help='frame side, px')
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument(
        '--overwrite',
        action='store_true',
        help='replace a shapes dataset made by this tool')
    args = parser.parse_args(argv)
    # a ROOT that is not ours: one line (RefuseOverwriteError, run_tool)
    out = make_shapes_dataset(args.root, args.videos_per_class, args.frames,
                              args.size, args.seed, args.overwrite)
    for key, path in out.items():
        print(f'{key}: {path}')


if __name__ == '__main__':
    sys.exit(run_tool(main, 'make_shapes_dataset'))
