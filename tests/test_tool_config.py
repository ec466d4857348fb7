"""How the tools turn their options into a config and a runner:
``tools/test.py``'s options (``apply_test_options``), the runner every tool
builds (``build_tool_runner``: the config's ``runner_type``), and
``tools/demo.py`` building that runner too."""
import logging
import os.path as osp

import pytest
from mmaction.registry import MODELS, RUNNERS
from mmengine.config import Config
from mmengine.runner import Runner

from amfir_mm.engine.hooks import InitUntrainedModelHook, RNGStateHook
from amfir_mm.utils.tool import (accuracy_summary, apply_test_options,
                                 build_tool_runner)
from conftest import LineModel, load_script

FEWSHOT = dict(type='FewShotAccuracy')


def _test_cfg(**entries):
    cfg = dict(
        test_dataloader=dict(dataset=dict(type='EpisodicDataset')),
        test_evaluator=dict(FEWSHOT))
    cfg.update(entries)
    return Config(cfg)


def test_test_options_checkpoint_work_dir_and_metric_folder():
    cfg, save_to = apply_test_options(_test_cfg(), 'configs/a/my_cfg.py',
                                      'none')
    assert save_to is None
    assert cfg.load_from is None and cfg.launcher == 'none'
    assert cfg.work_dir == osp.join('./work_dirs', 'my_cfg')
    assert cfg.test_evaluator == dict(FEWSHOT, out_dir=cfg.work_dir)
    assert 'episodes_file' not in cfg.test_dataloader.dataset

    cfg, _ = apply_test_options(
        _test_cfg(work_dir='from_config', load_from='pretrained.pth'),
        'c.py',
        'iter_10.pth',
        launcher='pytorch')
    assert (cfg.load_from, cfg.work_dir,
            cfg.launcher) == ('iter_10.pth', 'from_config', 'pytorch')
    # --cfg-options first (a folder named there is kept), --work-dir wins
    cfg, _ = apply_test_options(
        _test_cfg(),
        'c.py',
        'none',
        work_dir='mine',
        cfg_options={
            'test_evaluator.out_dir': 'plots',
            'test_dataloader.dataset.num_episodes': 7
        })
    assert cfg.work_dir == 'mine'
    assert cfg.test_evaluator.out_dir == 'plots'
    assert cfg.test_dataloader.dataset.num_episodes == 7


def test_test_options_dump_adds_an_evaluator():
    cfg, _ = apply_test_options(
        _test_cfg(), 'c.py', 'none', work_dir='w', dump='preds.pkl')
    assert cfg.test_evaluator == [
        dict(FEWSHOT, out_dir='w'),
        dict(type='DumpResults', out_file_path='preds.pkl')
    ]
    two = [dict(FEWSHOT), dict(type='AccMetric')]
    cfg, _ = apply_test_options(
        _test_cfg(test_evaluator=two), 'c.py', 'none', dump='p.pkl')
    assert [e['type'] for e in cfg.test_evaluator
            ] == ['FewShotAccuracy', 'AccMetric', 'DumpResults']


def test_test_options_episodes_file_read_or_written(tmp_path):
    """An existing episode list is tested on; a missing one is returned as
    the file to write the drawn episodes to."""
    listed = tmp_path / 'episodes.json'
    listed.write_text('[]')
    cfg, save_to = apply_test_options(
        _test_cfg(), 'c.py', 'none', episodes=str(listed))
    assert save_to is None
    assert cfg.test_dataloader.dataset.episodes_file == str(listed)
    missing = str(tmp_path / 'new.json')
    cfg, save_to = apply_test_options(
        _test_cfg(), 'c.py', 'none', episodes=missing)
    assert save_to == missing
    assert 'episodes_file' not in cfg.test_dataloader.dataset


@pytest.mark.parametrize('argv,options', [
    (['none'], dict()),
    ([
        'ckpt.pth', '--work-dir', 'w', '--episodes', 'e.json', '--dump',
        'd.pkl', '--launcher', 'pytorch', '--cfg-options', 'a.b=2'
    ],
     dict(
         work_dir='w',
         episodes='e.json',
         dump='d.pkl',
         launcher='pytorch',
         cfg_options={'a.b': 2})),
])
def test_test_script_passes_its_flags(tmp_path, monkeypatch, argv, options):
    """``tools/test.py`` hands each option to :func:`apply_test_options`."""
    monkeypatch.setenv('LOCAL_RANK', '0')  # else parse_args sets it
    tool = load_script('tools/test.py', 'amfir_test_tool_options')
    config = tmp_path / 'cfg.py'
    config.write_text('x = 1\n')
    calls = []

    class Stop(Exception):
        pass

    def record(cfg, config, checkpoint, **kwargs):
        calls.append((cfg.x, config, checkpoint, kwargs))
        raise Stop

    monkeypatch.setattr(tool, 'apply_test_options', record)
    with pytest.raises(Stop):
        tool.main([str(config)] + argv)
    want = dict(
        work_dir=None,
        episodes=None,
        dump=None,
        cfg_options=None,
        launcher='none')
    want.update(options)
    assert calls == [(1, str(config), argv[0], want)]


@RUNNERS.register_module(force=True)
class _TaggedRunner(Runner):
    """A runner a config can name as ``runner_type``."""


MODELS.register_module('_LineModel', module=LineModel, force=True)


def _line_cfg(work_dir, **entries):
    return Config(
        dict(
            model=dict(type='_LineModel'),
            work_dir=str(work_dir),
            default_scope='mmaction',
            log_level='WARNING',
            **entries))


@pytest.mark.parametrize('runner_type,cls', [(None, Runner),
                                             ('_TaggedRunner', _TaggedRunner)])
def test_build_tool_runner_builds_the_configs_runner_type(
        tmp_path, runner_type, cls):
    entries = {} if runner_type is None else dict(runner_type=runner_type)
    runner = build_tool_runner(_line_cfg(tmp_path / 'work', **entries))
    assert type(runner) is cls
    hooks = [type(h) for h in runner.hooks]
    assert InitUntrainedModelHook in hooks and RNGStateHook in hooks


METRICS = {
    'fewshot/accuracy': 60.0,
    'fewshot/ci95': 2.0,
    'fewshot/num_episodes': 3.0
}


@RUNNERS.register_module(force=True)
class _DemoStubRunner:
    """Stands in for the demo's runner (no training): records the config
    it was built from."""
    built = []

    def __init__(self, cfg):
        self.cfg = cfg
        self.logger = logging.getLogger('amfir_demo_stub_runner')
        self.hooks = []

    @classmethod
    def from_cfg(cls, cfg):
        cls.built.append(cls(cfg))
        return cls.built[-1]

    def register_hook(self, hook):
        self.hooks.append(type(hook))

    def train(self):
        pass

    def test(self):
        return dict(METRICS)


def test_demo_builds_the_configs_runner_type(tmp_path, monkeypatch, capsys):
    """``tools/demo.py`` builds the runner its config names, as
    ``tools/train.py`` and ``tools/test.py`` do (through
    ``build_tool_runner``, with the project's hooks)."""
    demo = load_script('tools/demo.py', 'amfir_demo_tool_runner')
    monkeypatch.setattr(demo, 'make_shapes_dataset', lambda root: None)
    monkeypatch.setattr(_DemoStubRunner, 'built', [])
    (tmp_path / 'work').mkdir()
    demo.main([
        '--data',
        str(tmp_path / 'data'), '--work-dir',
        str(tmp_path / 'work'), '--cfg-options', 'runner_type=_DemoStubRunner'
    ])
    assert len(_DemoStubRunner.built) == 1
    runner = _DemoStubRunner.built[0]
    assert runner.hooks == [InitUntrainedModelHook, RNGStateHook]
    assert runner.cfg['work_dir'] == str(tmp_path / 'work')
    assert runner.cfg['test_dataloader']['dataset']['dataset'][
        'ann_file'] == osp.join(str(tmp_path / 'data'), 'splits', 'test.txt')
    assert capsys.readouterr().out.splitlines()[-1] == accuracy_summary(
        METRICS, 5, 1)


def test_describe_data_joins_the_data_root():
    from amfir_mm.utils.tool import describe_data
    episodic = dict(
        type='EpisodicDataset',
        dataset=dict(
            data_root='data/hmdb51',
            ann_file='splits/train.txt',
            data_prefix=dict(img='rawframes')))
    assert describe_data(episodic) == \
        'data/hmdb51/splits/train.txt (frames under data/hmdb51/rawframes)'
    absolute = dict(ann_file='/abs/a.txt', data_prefix=dict(img='/abs/f'))
    assert describe_data(dict(absolute, data_root='data/x')) == \
        '/abs/a.txt (frames under /abs/f)'
    assert describe_data(dict(data_prefix=dict(img='d/train'), ann_file=''))\
        == 'the class folders in d/train'
