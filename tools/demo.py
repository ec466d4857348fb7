"""The quick start: generate the moving-shapes data, meta-train, meta-test.

    python tools/demo.py [--config CONFIG] [--work-dir DIR] [--data DIR]

Runs on CPU in a few minutes with nothing downloaded: the data is rendered
by :mod:`amfir_mm.datasets.synthetic_shapes` (novel test classes are
unseen shape/motion pairs) and the model trains from scratch.
"""
import argparse
import json
import os.path as osp
import sys

from mmengine.config import Config, DictAction
from mmengine.runner import Runner

from amfir_mm.datasets.synthetic_shapes import make_shapes_dataset
from amfir_mm.utils.io import RefuseOverwriteError, error_line

DEFAULT_CONFIG = 'configs/demo/shapes_amfir_r18_5way1shot.py'


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument('--config', default=DEFAULT_CONFIG)
    parser.add_argument('--work-dir', default='work_dirs/demo')
    parser.add_argument('--data', default='data/shapes',
                        help='where the generated dataset is written')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override config entries')
    args = parser.parse_args(argv)

    print(f'[demo] rendering the moving-shapes dataset into {args.data}')
    try:  # a --data folder that is not ours is refused, never deleted
        make_shapes_dataset(args.data)
    except RefuseOverwriteError as err:
        sys.exit(error_line(err))
    cfg = Config.fromfile(args.config)
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    cfg.work_dir = args.work_dir
    for split in ('train', 'val', 'test'):
        inner = cfg[f'{split}_dataloader'].dataset.dataset
        inner.ann_file = osp.join(args.data, 'splits', f'{split}.txt')
        inner.data_prefix = dict(img=osp.join(args.data, 'rawframes'))
    runner = Runner.from_cfg(cfg)
    runner.train()
    metrics = runner.test()
    summary = {k: round(float(v), 2) for k, v in metrics.items()}
    print('[demo] meta-test on novel classes:', json.dumps(summary))
    with open(osp.join(args.work_dir, 'demo_result.json'), 'w') as f:
        json.dump(summary, f, indent=1)
    return summary


if __name__ == '__main__':
    main()
