"""What every command-line tool does the same way (``tools/*.py``).

- :func:`run_tool`: runs a tool's ``main``; a project data error
  (:class:`~amfir_mm.utils.io.DataError` and its subclasses such as
  ``EpisodeError``, ``SplitFormatError``, ``UnreadableFrameError``, and
  ``FileNotFoundError``) reaches the user as one line on stderr naming the
  file, the full traceback goes to the run's log file (printed on stdout as
  ``full traceback: PATH``), and the exit status is 1.
- :func:`build_tool_runner`: builds the config's runner
  (:func:`~amfir_mm.utils.build_runner`) with a short terminal: the
  environment, the whole config and the hook table go to the log file only
  (MMEngine's ``Runner`` logs them at INFO on its console too), and a run
  that fails before its first training iteration leaves no
  ``work_dir/<timestamp>/`` behind (see :class:`ToolRun`).
- :func:`print_header`: the few lines a tool prints first (what runs, on
  what data, how long, where the log is).
- :func:`apply_test_options`: ``tools/test.py``'s options applied to the
  config (:func:`~amfir_mm.utils.train_options.apply_train_options` is
  ``tools/train.py``'s); both start with :func:`apply_common_options`.
- :func:`accuracy_summary`: the one plain line ``tools/demo.py`` and
  ``tools/test.py`` end with.
- :func:`plural`: ``'1 class'``, ``'2 classes'``.
"""
import contextlib
import logging
import os
import os.path as osp
import shutil
import sys
import tempfile
import time
import traceback
from typing import Callable, Iterable, Optional, Sequence, Tuple

from .config import config_errors_name
from .io import DataError, error_line

#: The errors a tool reports as one line: bad input data, missing files.
DATA_ERRORS = (DataError, FileNotFoundError)

#: Messages MMEngine's Runner logs at INFO that only the log file gets:
#: the environment table, the whole config and the hook table (hundreds of
#: lines before the first iteration).
LOG_FILE_ONLY_PREFIXES = ('Config:\n', 'Hooks will be executed',
                          '\n' + '-' * 60 + '\nSystem environment:')


def plural(count: int, singular: str, plural_form: str = None) -> str:
    """``'1 video'``, ``'2 videos'``, ``'1 class'``, ``'3 classes'``."""
    if count == 1:
        return f'{count} {singular}'
    if plural_form is None:
        plural_form = singular + ('es' if singular.endswith(
            ('s', 'sh', 'ch', 'x')) else 's')
    return f'{count} {plural_form}'


def is_rank_zero() -> bool:
    """Whether this process is rank 0 (or not launched by torchrun)."""
    return os.environ.get('RANK', '0') == '0'


def print_header(tool: str, lines: Iterable[str]) -> None:
    """Print ``[tool] line`` for each line (rank 0 only), flushed at once so
    that the user sees it before the slow imports and builds."""
    if is_rank_zero():
        for line in lines:
            print(f'[{tool}] {line}', flush=True)


class LogFileOnly(logging.Filter):
    """Drops, on the handler it is added to, the records that start with
    one of :data:`LOG_FILE_ONLY_PREFIXES` (the file handler keeps them)."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.msg if isinstance(record.msg, str) else ''
        return not message.startswith(LOG_FILE_ONLY_PREFIXES)


def _console_handlers(logger: logging.Logger) -> list:
    return [h for h in logger.handlers
            if type(h) is logging.StreamHandler]  # not FileHandler


def _file_handlers(logger: logging.Logger) -> list:
    return [h for h in logger.handlers if isinstance(h, logging.FileHandler)]


@contextlib.contextmanager
def _quiet_runner_console():
    """While building a Runner: its logger's console handler gets
    :class:`LogFileOnly` as soon as the logger exists (MMEngine logs the
    environment and the config in ``Runner.__init__`` right after
    ``build_logger``, before anything else could add a filter)."""
    from mmengine.runner import Runner
    original = Runner.build_logger

    def build_logger(self, *args, **kwargs):
        logger = original(self, *args, **kwargs)
        for handler in _console_handlers(logger):
            if not any(isinstance(f, LogFileOnly) for f in handler.filters):
                handler.addFilter(LogFileOnly())
        return logger

    Runner.build_logger = build_logger
    try:
        yield
    finally:
        Runner.build_logger = original


class ToolRun:
    """One run of a tool: the work dir and runner it made, what to remove
    if it fails before training.

    MMEngine's Runner creates ``work_dir`` (if absent), ``work_dir/
    <timestamp>/`` (log, ``vis_data``) and dumps the config as
    ``work_dir/<config name>.py``. If the run fails before its first
    training iteration (a data error, a bad option, Ctrl-C; for
    ``tools/test.py``, which does not train, any failure),
    :meth:`remove_failed_run` removes exactly what this run created: the
    timestamp folder (after moving its log file to
    ``<tempdir>/amfir_mm/``), the dumped config if it was not there before,
    and ``work_dir`` if this run created it and it is now empty.

    Args:
        tool (str): the tool's name, for the log file's name.
    """

    def __init__(self, tool: str) -> None:
        self.tool = tool
        self.work_dir = None
        self.work_dir_existed = True
        self.entries_before = frozenset()
        self.runner = None
        self.config = None  # set by load_config

    def before_runner(self, work_dir: str) -> None:
        """Record what ``work_dir`` holds before the runner is built."""
        self.work_dir = work_dir
        self.work_dir_existed = osp.isdir(work_dir)
        self.entries_before = frozenset(
            os.listdir(work_dir) if self.work_dir_existed else ())

    @property
    def started_training(self) -> bool:
        """Whether the runner's train loop exists and has iterated
        (``Runner.iter`` itself would build the loop, and with it the
        dataset that may have just failed)."""
        from mmengine.runner import BaseLoop
        loop = getattr(self.runner, '_train_loop', None)
        return isinstance(loop, BaseLoop) and loop.iter > 0

    def log_file(self) -> Optional[str]:
        """The log file of this run's MMEngine logger (None before it
        exists)."""
        from mmengine.logging import MMLogger
        if self.work_dir is None or not MMLogger._instance_dict:
            return None
        logger = self.runner.logger if self.runner is not None else \
            MMLogger.get_current_instance()
        for handler in _file_handlers(logger):
            return handler.baseFilename
        return None

    def _created_here(self, path: str) -> Optional[str]:
        """The entry of ``work_dir`` that ``path`` lies in, if this run
        created it, else None."""
        rel = osp.relpath(osp.abspath(path), osp.abspath(self.work_dir))
        top = rel.split(os.sep)[0]
        if rel.startswith('..') or top in self.entries_before:
            return None
        return top

    def remove_failed_run(self) -> Optional[str]:
        """Remove what this run created (see the class doc) if it failed
        before training; returns where its log file is now (None if it had
        none). Rank 0 only; other ranks return the log path unchanged."""
        log = self.log_file()
        if self.work_dir is None or self.started_training or \
                not is_rank_zero():
            return log
        from mmengine.logging import MMLogger
        run_dir = self._created_here(osp.dirname(log)) if log else None
        if log and run_dir is not None and \
                osp.dirname(osp.abspath(log)) == osp.join(
                    osp.abspath(self.work_dir), run_dir):
            for logger in MMLogger._instance_dict.values():
                for handler in _file_handlers(logger):
                    if handler.baseFilename == log:
                        handler.close()
                        logger.removeHandler(handler)
            kept = osp.join(_log_folder(), f'{self.tool}_{osp.basename(log)}')
            shutil.move(log, kept)
            shutil.rmtree(osp.join(self.work_dir, run_dir))
            log = kept
        runner_cfg = getattr(self.runner, 'cfg', None)
        filename = getattr(runner_cfg, 'filename', None)
        if filename:  # Runner.dump_config's copy, if this run made it
            dumped = osp.basename(filename)
            if dumped not in self.entries_before and osp.isfile(
                    osp.join(self.work_dir, dumped)):
                os.remove(osp.join(self.work_dir, dumped))
        if not self.work_dir_existed and osp.isdir(self.work_dir) and \
                not os.listdir(self.work_dir):
            os.rmdir(self.work_dir)
        return log


#: The :class:`ToolRun` of the tool running in this process (set by
#: :func:`run_tool`), or None (e.g. a test calling a tool's ``main``).
_CURRENT_RUN: Optional[ToolRun] = None


def _log_folder() -> str:
    folder = osp.join(tempfile.gettempdir(), 'amfir_mm')
    os.makedirs(folder, exist_ok=True)
    return folder


def build_tool_runner(cfg):
    """:func:`~amfir_mm.utils.build_runner` for a tool (the config's
    ``runner_type`` where it sets one; ``tools/train.py``,
    ``tools/test.py`` and ``tools/demo.py`` all build their runner here):
    the environment, config and hook table only in the log file, and (under
    :func:`run_tool`) the work dir recorded so that a run failing before
    training leaves nothing behind. Prints ``log: PATH`` (rank 0)."""
    from .runner import build_runner
    run = _CURRENT_RUN
    if run is not None:
        run.before_runner(cfg.work_dir)
    with _quiet_runner_console():
        runner = build_runner(cfg)
    if run is not None:
        run.runner = runner
    log = next((h.baseFilename for h in _file_handlers(runner.logger)), None)
    if log:
        print_header(run.tool if run is not None else 'log',
                     [f'log (with the config, environment and hooks): {log}'])
    return runner


def _dataset_parts(dataset_cfg) -> Tuple[dict, dict]:
    """The outermost and the innermost dataset config of wrappers such as
    ``EpisodicDataset(dataset=...)``."""
    outer = inner = dataset_cfg
    while isinstance(inner.get('dataset'), dict):
        inner = inner['dataset']
    return outer, inner


def describe_data(dataset_cfg) -> str:
    """``'<ann_file> (frames under <root>)'`` of a dataset config, or its
    data root where it lists no file; relative paths joined to
    ``data_root`` as MMEngine's ``BaseDataset`` joins them."""
    _, inner = _dataset_parts(dataset_cfg)
    data_root = inner.get('data_root') or ''

    def joined(path):
        return osp.join(data_root, path) if path and data_root and \
            not osp.isabs(path) else path

    root = joined((inner.get('data_prefix') or {}).get('img')) or \
        inner.get('data_root')
    ann_file = joined(inner.get('ann_file'))
    if ann_file:
        return f'{ann_file} (frames under {root})' if root else ann_file
    return f'the class folders in {root}' if root else 'the config\'s data'


def describe_episodes(dataset_cfg) -> str:
    """``'500 5-way 1-shot episodes'`` of an episodic dataset config."""
    outer, _ = _dataset_parts(dataset_cfg)
    if 'num_ways' not in outer:
        return 'the test set'
    kind = f'{outer["num_ways"]}-way {outer["num_shots"]}-shot episode'
    if outer.get('episodes_file'):
        return f'the {kind}s listed in {outer["episodes_file"]}'
    return plural(outer.get('num_episodes', 0), kind)


def run_header(cfg, config: str, tool: str, checkpoint: str = None) -> list:
    """The header lines of ``tools/train.py`` / ``tools/test.py``: the
    model, what it runs (iterations or test episodes), the data, the work
    dir and when progress is logged."""
    model = cfg.model.get('type', 'model')
    lines = []
    if tool == 'train':
        train_cfg = cfg.get('train_cfg') or {}
        val = train_cfg.get('val_interval')
        lines.append(f'{model} from {config}: meta-train '
                     f'{plural(train_cfg.get("max_iters", 0), "iteration")}' +
                     (f', validation every {val}'
                      if val and cfg.get('val_cfg') else ''))
        lines.append(f'data: {describe_data(cfg.train_dataloader.dataset)}')
        interval = cfg.get('default_hooks', {}).get('logger',
                                                    {}).get('interval')
        lines.append(f'work dir: {cfg.work_dir}; loss and time left (ETA) '
                     f'are logged every {plural(interval, "iteration")}')
    else:
        weights = 'the initialised weights (no checkpoint)' if \
            checkpoint in (None, 'none') else checkpoint
        lines.append(f'{model} from {config}, weights: {weights}')
        lines.append('meta-test on '
                     f'{describe_episodes(cfg.test_dataloader.dataset)} of '
                     f'{describe_data(cfg.test_dataloader.dataset)}')
        lines.append(f'work dir: {cfg.work_dir}')
    return lines


def apply_common_options(cfg,
                         config: str,
                         work_dir: Optional[str] = None,
                         cfg_options: Optional[dict] = None,
                         launcher: str = 'none'):
    """What ``tools/train.py`` and ``tools/test.py`` do first with their
    options (as MMAction2's tools): merge ``--cfg-options``, set the
    launcher and the work dir.

    Args:
        cfg (Config): the loaded config; changed in place.
        config (str): its file (the default work dir is named after it).
        work_dir (str, optional): ``--work-dir``; else the config's
            ``work_dir``, else ``./work_dirs/<config file name>``.
        cfg_options (dict, optional): ``--cfg-options`` (merged first, so
            the other options override them).
        launcher (str): ``--launcher`` (``'none'``, ``'pytorch'``, ...).

    Returns:
        Config: ``cfg``.
    """
    if cfg_options is not None:
        cfg.merge_from_dict(cfg_options)
    cfg.launcher = launcher
    if work_dir is not None:
        cfg.work_dir = work_dir
    elif cfg.get('work_dir', None) is None:
        cfg.work_dir = osp.join('./work_dirs',
                                osp.splitext(osp.basename(config))[0])
    return cfg


def apply_test_options(cfg,
                       config: str,
                       checkpoint: str,
                       work_dir: Optional[str] = None,
                       episodes: Optional[str] = None,
                       dump: Optional[str] = None,
                       cfg_options: Optional[dict] = None,
                       launcher: str = 'none') -> tuple:
    """Apply ``tools/test.py``'s options to the config.

    Args:
        cfg (Config): the loaded config; changed in place.
        config (str): its file (see :func:`apply_common_options`).
        checkpoint (str): the checkpoint to test (``load_from``), or
            ``'none'``: the initialised model (``load_from=None``).
        work_dir (str, optional), cfg_options (dict, optional),
        launcher (str): see :func:`apply_common_options`.
        episodes (str, optional): an episode list (JSON): the test set's
            ``episodes_file`` if the file exists; else where the drawn
            episodes are to be written (the second value returned).
        dump (str, optional): a ``DumpResults`` evaluator pickling the
            per-episode predictions to this file is added to
            ``test_evaluator``.

    Returns:
        tuple: ``cfg`` and the file to write the drawn test episodes to
        (``episodes`` when it names no file yet, else None). The config's
        ``FewShotAccuracy`` writes its per-episode accuracies and plots to
        the work dir (:func:`set_metric_out_dir`).
    """
    apply_common_options(cfg, config, work_dir, cfg_options, launcher)
    cfg.load_from = None if checkpoint == 'none' else checkpoint
    set_metric_out_dir(cfg, cfg.work_dir)  # next to the logs
    if dump is not None:
        cfg.test_evaluator = [cfg.test_evaluator] if isinstance(
            cfg.test_evaluator, dict) else list(cfg.test_evaluator)
        cfg.test_evaluator.append(dict(type='DumpResults', out_file_path=dump))
    save_episodes_to = None
    if episodes is not None:
        if osp.isfile(episodes):
            cfg.test_dataloader.dataset.episodes_file = episodes
        else:
            save_episodes_to = episodes
    return cfg, save_episodes_to


def set_metric_out_dir(cfg, out_dir: str) -> None:
    """Let the config's ``FewShotAccuracy`` test evaluator write its
    per-episode accuracies and plots to ``out_dir`` (unless the config
    names a folder)."""
    evaluators = cfg.test_evaluator if isinstance(
        cfg.test_evaluator, (list, tuple)) else [cfg.test_evaluator]
    for evaluator in evaluators:
        if evaluator.get('type') == 'FewShotAccuracy':
            evaluator.setdefault('out_dir', out_dir)


def accuracy_summary(metrics: dict,
                     num_ways: int,
                     num_shots: int,
                     prefix: str = 'fewshot') -> str:
    """The meta-test result as one plain line, e.g. ``novel-class 5-way
    1-shot accuracy: 79.9 ± 1.4 % (RGB 42.6, flow 74.4, average fusion
    79.5, oracle 80.4; 500 test episodes)``.

    Args:
        metrics (dict): :class:`~amfir_mm.evaluation.FewShotAccuracy`'s
            metrics as the runner returns them (``'fewshot/accuracy'``, ...,
            in %).
        num_ways (int), num_shots (int): the test episodes' N and K.
        prefix (str): the metric's prefix.
    """

    def get(name):
        return metrics.get(f'{prefix}/{name}')

    parts = [
        f'{label} {get(key):.1f}'
        for label, key in (('RGB', 'rgb_accuracy'), ('flow', 'flow_accuracy'),
                           ('average fusion', 'average_fusion_accuracy'),
                           ('oracle', 'oracle_accuracy'))
        if get(key) is not None
    ]
    episodes = plural(int(get('num_episodes')), 'test episode')
    details = f'{", ".join(parts)}; {episodes}' if parts else episodes
    return (f'novel-class {num_ways}-way {num_shots}-shot accuracy: '
            f'{get("accuracy"):.1f} ± {get("ci95"):.1f} % ({details})')


def _write_traceback(err: BaseException, run: ToolRun) -> str:
    """Append ``err``'s traceback to the run's log file (or a new file in
    ``<tempdir>/amfir_mm/``); returns the file."""
    text = ''.join(
        traceback.format_exception(type(err), err, err.__traceback__))
    log = run.log_file()
    if log is None:
        log = osp.join(
            _log_folder(), f'{run.tool}_'
            f'{time.strftime("%Y%m%d_%H%M%S")}_{os.getpid()}.log')
    with open(log, 'a', encoding='utf-8') as f:
        f.write(f'{time.strftime("%Y/%m/%d %H:%M:%S")} - {run.tool} - '
                f'ERROR - {error_line(err)}\n{text}')
    return log


def run_tool(
    main: Callable,
    tool: str,
    argv: Optional[Sequence] = None,
    usage_errors: Tuple[type, ...] = (),
    reported_errors: Tuple[type, ...] = ()
) -> int:
    """Run a tool's ``main(argv)`` and return the exit status.

    A project data error (:data:`DATA_ERRORS`; a config that cannot be read
    or names an unregistered type is a
    :class:`~amfir_mm.utils.config.ConfigError`) is printed as one line
    ``<ErrorType>: <message naming the file>`` on stderr, its traceback
    is written to the log file (``full traceback: PATH`` on stdout), and a
    run that failed before training leaves no work dir behind
    (:class:`ToolRun`); status 1. ``reported_errors`` (errors whose
    message says what happened and what to do, e.g. a non-finite loss) are
    printed the same way. ``usage_errors`` are printed as
    ``error: <message>``, status 1. Any other exception propagates
    (a bug: the traceback is the useful report). ``main``'s return value
    is the status if it is an int, else 0.
    """
    global _CURRENT_RUN
    run = _CURRENT_RUN = ToolRun(tool)
    try:
        with config_errors_name(lambda: run.config):
            status = main(argv)
        return status if isinstance(status, int) else 0
    except DATA_ERRORS + tuple(reported_errors) + tuple(usage_errors) as err:
        log = _write_traceback(err, run)
        log = run.remove_failed_run() or log
        print(f'full traceback: {log}', flush=True)
        line = f'error: {err}' if isinstance(err, tuple(usage_errors)) and \
            not isinstance(err, DATA_ERRORS + tuple(reported_errors)) \
            else error_line(err)
        print(line, file=sys.stderr, flush=True)
        return 1
    except BaseException:  # a bug or Ctrl-C: the traceback is the report
        if not run.started_training:
            log = run.remove_failed_run()
            if log:
                print(f'log of the failed run: {log}', flush=True)
        raise
    finally:
        _CURRENT_RUN = None
