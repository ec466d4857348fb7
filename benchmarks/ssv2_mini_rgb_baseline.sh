#!/usr/bin/env bash
# RGB-only few-shot baseline on ../shared/data/ssv2_mini (issue: foundation).
# Meta-train on train/ (5 classes), meta-validate 5-way 1-shot on val/
# (5 novel classes), 1000 fixed-seed episodes; the frozen ImageNet model
# (no training: `tools/test.py CONFIG none` initialises the model, i.e. loads
# the packaged ImageNet weights) is the floor.  Writes
# benchmarks/results/ssv2_mini_rgb.json with the commit it ran at.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
CFG=configs/fewshot_rgb/rgbproto_ssv2mini_1shot_effl0.py
W=${WORK_DIR:-work_dirs/bench_ssv2_mini_rgb}
start=$(date +%s)
commit=$(git rev-parse --short HEAD)
if [ -n "$(git status --porcelain --untracked-files=no)" ]; then
    commit="$commit+uncommitted"
fi
$PY tools/test.py $CFG none --work-dir $W/frozen
$PY tools/train.py $CFG --work-dir $W/train --no-validate
$PY tools/test.py $CFG $W/train/iter_200.pth --work-dir $W/trained
$PY - "$W" "$start" "$commit" <<'PY'
import json, os, platform, sys, time
w, start, commit = sys.argv[1], int(sys.argv[2]), sys.argv[3]
res = {k: json.load(open(f'{w}/{k}/test_metrics.json'))['metrics']
       for k in ('frozen', 'trained')}
out = dict(
    command='bash benchmarks/ssv2_mini_rgb_baseline.sh',
    date=time.strftime('%Y-%m-%d %H:%M'), commit=commit,
    machine=f'{platform.machine()}, {os.cpu_count()} CPUs, CPU only',
    wall_s=round(time.time() - start),
    setting='5-way 1-shot, 8 frames, 112 px, EfficientNet-Lite0 ImageNet '
    '+ cosine prototype head; 200 episodes of meta-training on train/, '
    '1000 fixed-seed episodes on val/', chance=20.0,
    frozen={k: round(v, 2) for k, v in res['frozen'].items()},
    trained={k: round(v, 2) for k, v in res['trained'].items()})
os.makedirs('benchmarks/results', exist_ok=True)
json.dump(out, open('benchmarks/results/ssv2_mini_rgb.json', 'w'), indent=1)
print(json.dumps(out, indent=1))
PY
