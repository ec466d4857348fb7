"""Time README's "A first run on real frames" (extract flow, train, test).

    .venv/bin/python benchmarks/real_data_recipe.py \
        --out benchmarks/results/real_data_recipe.json [--scratch DIR]

Runs the README's three commands on ``../shared/data/ssv2_mini`` with the
flow and the work dir in a new scratch folder (``--scratch``, default a
new temporary folder; never an existing one), and records each command,
its wall time, exit status and last output line, the 1-minute load
average before it, the date, the machine and the commit.
"""
import argparse
import json
import os
import os.path as osp
import platform
import subprocess
import sys
import tempfile
import time

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))


def commit() -> str:
    out = subprocess.run(['git', 'rev-parse', '--short', 'HEAD'],
                         cwd=ROOT,
                         capture_output=True,
                         text=True).stdout.strip()
    dirty = subprocess.run(
        ['git', 'status', '--porcelain', '--', 'amfir_mm', 'tools', 'configs'],
        cwd=ROOT,
        capture_output=True,
        text=True).stdout.strip()
    return out + (' (uncommitted changes in the tree)' if dirty else '')


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument('--out', required=True, help='result JSON')
    parser.add_argument(
        '--scratch',
        help='a new folder for flow and work '
        'dir (default: a new temporary folder)')
    parser.add_argument(
        '--data', default=osp.join(ROOT, '..', 'shared', 'data', 'ssv2_mini'))
    args = parser.parse_args(argv)
    if args.scratch:
        os.makedirs(args.scratch)  # refuses an existing folder
        scratch = args.scratch
    else:
        scratch = tempfile.mkdtemp(prefix='real_data_recipe_')
    flow = osp.join(scratch, 'ssv2_mini_paired')
    work = osp.join(scratch, 'work')
    config = 'configs/amfir_ssv2mini_1shot_r18_smoke.py'
    prefix = [
        f'{split}_dataloader.dataset.dataset.data_prefix.img='
        f'{flow}/{sub}'
        for split, sub in (('train', 'train'), ('val', 'val'), ('test', 'val'))
    ]
    python = sys.executable
    steps = [
        [
            python, 'tools/extract_flow.py', args.data, flow, '--write-rgb',
            '--short-side', '128'
        ],
        [
            python, 'tools/train.py', config, '--work-dir', work,
            '--cfg-options', *prefix
        ],
        [
            python, 'tools/test.py', config,
            osp.join(work, 'iter_12.pth'), '--work-dir', work, '--episodes',
            osp.join(scratch, 'episodes.json'), '--cfg-options', prefix[2],
            'test_dataloader.dataset.num_episodes=10000'
        ],
    ]
    record = dict(
        command=' '.join([
            'python', 'benchmarks/real_data_recipe.py',
            *(argv if argv is not None else sys.argv[1:])
        ]),
        date=time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime()),
        commit=commit(),
        machine=f'{platform.machine()}, '
        f'{os.cpu_count()} CPUs, CPU only',
        steps=[])
    for step in steps:
        load = os.getloadavg()[0]
        start = time.monotonic()
        proc = subprocess.run(step, cwd=ROOT, capture_output=True, text=True)
        lines = (proc.stdout.strip() or proc.stderr.strip()).splitlines()
        record['steps'].append(
            dict(
                command=' '.join(
                    osp.relpath(a, ROOT) if a == python else a for a in step),
                wall_s=round(time.monotonic() - start, 1),
                returncode=proc.returncode,
                load_average_1min_before=round(load, 1),
                last_line=lines[-1] if lines else ''))
        print(json.dumps(record['steps'][-1]), flush=True)
        if proc.returncode:
            sys.stderr.write(proc.stderr[-3000:])
            break
    with open(args.out, 'w') as f:
        json.dump(record, f, indent=1, ensure_ascii=False)
    return 0 if all(s['returncode'] == 0 for s in record['steps']) else 1


if __name__ == '__main__':
    sys.exit(main())
