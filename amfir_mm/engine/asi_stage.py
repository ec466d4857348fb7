"""A second training stage for AMFIR's reliability net, on held-out classes.

:class:`AMFIRTrainLoop` is MMEngine's ``IterBasedTrainLoop`` plus, when
``asi_stage`` is set, an :class:`ASIStage` run after the last normal
iteration: every parameter but ``model.asi`` frozen, the branches in eval
mode, ``model.asi`` trained on ``loss_asi`` alone on episodes of classes
the branches never saw (by default the validation classes).

Where it runs: MMEngine's ``CheckpointHook`` writes the final checkpoint in
``after_train_iter`` of the last iteration (``save_last``, its default),
and ``IterBasedTrainLoop.run`` validates after that.  The stage therefore
runs inside the last iteration, between its optimiser step and its
``after_train_iter`` hooks: the final checkpoint (and a ``save_best``
copy made by the last validation) holds the stage-2 ASI, the earlier
checkpoints hold the jointly trained one, and a run resumed from an
earlier checkpoint runs the stage again when it reaches its last
iteration.  The last iteration's logged ``time`` includes the stage.
"""
import copy
import time
from typing import Iterator, List, Optional, Union

import torch
from mmaction.registry import LOOPS
from mmengine.dist import all_reduce, get_world_size
from mmengine.model import is_model_wrapper
from mmengine.optim import build_optim_wrapper
from mmengine.runner import BaseLoop, IterBasedTrainLoop
from torch.utils.data import DataLoader

from ..utils.train_options import UnsupportedOptionError
from .cached_episode_loops import CachedEpisodeMixin, _to, _video_index
from .hooks import NonFiniteLossError

DEFAULT_OPTIM_WRAPPER = dict(optimizer=dict(type='AdamW', lr=1e-3))


def _unwrap(model):
    return model.module if is_model_wrapper(model) else model


def check_asi_model(model) -> None:
    """Refuse a model without an ASI reliability net (``model.asi``)."""
    model = _unwrap(model)
    if getattr(model, 'asi', None) is None or \
            getattr(model, 'loss_asi', None) is None:
        detail = ''
        if hasattr(model, 'modalities'):
            detail = (f' (modalities={tuple(model.modalities)}: the stage '
                      'needs two, and reliability=\'asi\')')
        raise UnsupportedOptionError(
            'train_cfg.asi_stage needs a model with an ASI reliability net '
            f'(model.asi and model.loss_asi); {type(model).__name__} has '
            f'none{detail}. A single-modality model or '
            "reliability='uniform' has nothing for the stage to train: "
            'remove asi_stage from train_cfg')


class _EpisodeLoader(BaseLoop):
    """A loop that only builds its episode loader (the base of
    :class:`ASIStage` under :class:`CachedEpisodeMixin`, whose
    ``__init__`` passes ``evaluator`` and ``fp16``)."""

    def __init__(self, runner, dataloader, evaluator=None, fp16=False):
        super().__init__(runner, dataloader)
        self.fp16 = fp16

    def run(self):
        raise NotImplementedError


class ASIStage(CachedEpisodeMixin, _EpisodeLoader):
    """Retrain AMFIR's reliability net alone on held-out-class episodes.

    Why: trained jointly with the branches on the meta-training classes,
    ASI learns from the branches' posteriors on classes they are fitting,
    which are more confident (and more often right) than their posteriors
    on novel classes, so its reliabilities do not transfer to the
    meta-test.  Classes the branches never saw give posteriors that look
    like novel-class ones; ``benchmarks/ssv2_mini.py`` (``fit_asi_heldout``)
    measured the gain of training ASI on such posteriors.

    What data: by default the **validation classes** (the standard splits'
    val classes are disjoint from the meta-training and test classes):
    the runner's ``val_dataloader`` config (an :class:`EpisodicDataset`)
    with ``num_episodes = iters * world_size``, no ``episodes_file``,
    ``DefaultSampler(shuffle=False)`` (each rank its own ``iters``
    episodes) and one episode per iteration; the episode seed stays the
    val set's, so the first episodes are the val loop's.  Each video goes
    through the **val pipeline** (deterministic: test-mode frame sampling,
    centre crop) once, as in :class:`CachedEpisodeValLoop` (one backbone
    pass per video, features cached, ``video_batch_size`` videos a batch,
    the val loader's ``num_workers``); each iteration
    runs the heads and ASI on one episode's cached features, so the stage
    costs one embedding pass of the val videos plus ``iters`` cheap steps.
    ``dataloader`` replaces that default with any episode loader config
    (``batch_size`` episodes per iteration; its sampler is restarted when
    exhausted).

    The cost: once ASI has trained on them, the val classes no longer give
    an unbiased estimate of ASI (or of the fused accuracy): validation
    after the stage is optimistic; the test split still is unbiased.  With
    ``--no-validate`` (no ``val_dataloader``) set ``dataloader``.

    How: every parameter but ``model.asi``'s gets ``requires_grad=False``
    and every module but ``model.asi`` goes to eval mode (BatchNorm
    statistics and dropout of the branches do not move); ``model.asi`` is
    trained with its own optimiser (``optim_wrapper``, built on
    ``model.asi`` alone) on the model's ``loss_asi`` (``KL(r || pi)``
    against the free-energy target from the frozen branches' posteriors),
    averaged over the iteration's episodes; on several ranks the gradients
    are averaged across them.  The modes and ``requires_grad`` flags are
    restored afterwards.  Progress goes to the runner's logger every
    ``log_interval`` iterations (the loss of rank 0's episodes); a
    non-finite loss stops the run
    (:class:`NonFiniteLossError`) before its optimiser step.

    Args:
        runner (Runner): the runner; its model (unwrapped if a DDP
            wrapper) needs ``asi`` and ``loss_asi`` (see
            :func:`check_asi_model`).
        iters (int): optimiser steps (``>= 1``).
        dataloader (dict | DataLoader, optional): the episode loader;
            None: the val classes as above.
        optim_wrapper (dict): the stage's optimiser wrapper config (for
            :func:`mmengine.optim.build_optim_wrapper`), default AdamW
            with ``lr=1e-3``.
        log_interval (int): log the loss every this many iterations.
        video_batch_size (int): videos per backbone batch when embedding.
    """

    def __init__(self,
                 runner,
                 iters: int = 300,
                 dataloader: Optional[Union[dict, DataLoader]] = None,
                 optim_wrapper: Optional[dict] = None,
                 log_interval: int = 50,
                 video_batch_size: int = 8) -> None:
        check_asi_model(runner.model)
        if int(iters) != iters or iters < 1:
            raise ValueError(f'asi_stage.iters must be an integer >= 1, got '
                             f'{iters!r}')
        if log_interval < 1:
            raise ValueError(f'asi_stage.log_interval must be >= 1, got '
                             f'{log_interval}')
        self.iters = int(iters)
        self.log_interval = log_interval
        if dataloader is None:
            dataloader = self.default_dataloader(runner, self.iters)
        super().__init__(
            runner, dataloader, None, video_batch_size=video_batch_size)
        # imported here: amfir_mm.datasets imports amfir_mm.utils, which
        # imports this package
        from ..datasets import EpisodicDataset
        if not isinstance(self.dataloader.dataset, EpisodicDataset):
            raise UnsupportedOptionError(
                'asi_stage.dataloader must hold an EpisodicDataset, got '
                f'{type(self.dataloader.dataset).__name__}')
        self.optim_wrapper = build_optim_wrapper(
            self._model.asi,
            copy.deepcopy(dict(optim_wrapper or DEFAULT_OPTIM_WRAPPER)))

    @staticmethod
    def default_dataloader(runner, iters: int) -> dict:
        """The val loader's config turned into the stage's episode loader
        (see the class docstring)."""
        val = getattr(runner, '_val_dataloader', None)
        if not isinstance(val, dict):
            val = runner.cfg.get('val_dataloader')
        if not isinstance(val, dict) or not isinstance(
                val.get('dataset'), dict):
            raise UnsupportedOptionError(
                'train_cfg.asi_stage draws its held-out-class episodes '
                'from the val_dataloader config, and this run has none '
                '(--no-validate removes it): set '
                'train_cfg.asi_stage.dataloader to an episode loader of '
                'classes the branches do not train on')
        cfg = copy.deepcopy(dict(val))
        dataset = dict(cfg['dataset'])
        dataset.pop('episodes_file', None)
        dataset['num_episodes'] = iters * get_world_size()
        cfg.update(
            dataset=dataset,
            batch_size=1,
            sampler=dict(type='DefaultSampler', shuffle=False))
        cfg.pop('batch_sampler', None)
        return cfg

    def _index_batches(self) -> Iterator[List[int]]:
        """This rank's episode indices, ``batch_size`` at a time, the
        sampler restarted (next epoch) when exhausted."""
        batch_sampler, epoch = self.dataloader.batch_sampler, 0
        while True:
            if hasattr(self.dataloader.sampler, 'set_epoch'):
                self.dataloader.sampler.set_epoch(epoch)
            empty = True
            for indices in batch_sampler:
                empty = False
                yield list(indices)
            if empty:
                raise ValueError('the asi_stage episode loader is empty')
            epoch += 1

    def episode_loss(self, cache, indices: List[int]) -> torch.Tensor:
        """The mean ``loss_asi`` of the episodes ``indices`` from the
        cached features: per episode, ``loss_asi(log_pi (M, S), log_probs
        (M, S, N), labels (M, ))`` of :meth:`AMFIRRecognizer.batch_outputs`
        (episodes of one shape in one batch); the gradient reaches
        ``model.asi`` only."""
        from ..models.utils import map_episode_batches
        from ..models.utils.episodes import unbatch
        model = self._model
        orders, samples = zip(*(self.dataloader.dataset.episode_sample(i)
                                for i in indices))
        outputs = map_episode_batches(
            lambda f, meta, index: unbatch(
                model.batch_outputs(f, meta, index)), cache, list(samples),
            _video_index(orders))
        losses = [
            model.loss_asi(out['log_pi'], out['log_probs'].detach(),
                           sample.gt_label.to(out['log_pi'].device))
            for out, sample in zip(outputs, samples)
        ]
        return torch.stack(losses).mean()

    def _sync_gradients(self) -> None:
        """Average ``model.asi``'s gradients across ranks."""
        if get_world_size() == 1:
            return
        for param in self._model.asi.parameters():
            if param.grad is not None:
                all_reduce(param.grad, op='mean')

    def run(self) -> List[float]:
        """Train ``model.asi`` for ``iters`` steps; returns the losses."""
        model, logger = self._model, self.runner.logger
        modes = [(module, module.training) for module in model.modules()]
        flags = [(param, param.requires_grad) for param in model.parameters()]
        videos = self.dataloader.dataset.dataset
        start, losses = time.monotonic(), []
        try:
            model.eval()
            model.requires_grad_(False)
            logger.info(
                f'ASI stage: training model.asi alone ({self.iters} '
                'iterations, branches frozen in eval mode) on episodes of '
                f'{getattr(videos, "ann_file", None) or "its loader"}')
            features = self.embed_all_videos()
            device = next(model.parameters()).device
            with torch.no_grad():
                cache = model.cache_videos(_to(features, device))
            model.asi.train()
            model.asi.requires_grad_(True)
            batches = self._index_batches()
            for it in range(self.iters):
                loss = self.episode_loss(cache, next(batches))
                if not torch.isfinite(loss):
                    raise NonFiniteLossError(
                        f'ASI stage: loss_asi is {loss.item()} at iteration '
                        f'{it + 1}/{self.iters}; model.asi not updated')
                self.optim_wrapper.backward(loss)
                self._sync_gradients()
                self.optim_wrapper.step()
                self.optim_wrapper.zero_grad()
                losses.append(loss.item())
                if (it + 1) % self.log_interval == 0 or it == 0 or \
                        it + 1 == self.iters:
                    logger.info(f'ASI stage: iter {it + 1}/{self.iters} '
                                f'loss_asi {losses[-1]:.4f}')
        finally:
            for module, training in modes:
                module.training = training
            for param, requires_grad in flags:
                param.requires_grad_(requires_grad)
        logger.info(f'ASI stage: done in {time.monotonic() - start:.1f} s '
                    f'(loss_asi {losses[0]:.4f} at the first iteration, '
                    f'{losses[-1]:.4f} at the last)')
        return losses


@LOOPS.register_module()
class AMFIRTrainLoop(IterBasedTrainLoop):
    """``IterBasedTrainLoop`` with an optional held-out-class ASI stage.

    Without ``asi_stage`` it is ``IterBasedTrainLoop``.  With it, after the
    last normal iteration's optimiser step and before that iteration's
    ``after_train_iter`` hooks (where ``CheckpointHook`` writes the final
    checkpoint; the last validation follows), an :class:`ASIStage` retrains
    ``model.asi`` alone, the branches frozen, on episodes of classes the
    branches never saw (by default the val classes, through the val
    pipeline): their posteriors there look like novel-class posteriors,
    which the jointly trained ASI never saw.  The price: validation after
    the stage no longer estimates ASI without bias (the test split does).
    See :class:`ASIStage` for the data, the optimiser and the logging, and
    the module docstring for the ordering.

    The model check runs when the loop is built (``Runner.train``), before
    any iteration: a model without an ASI net (one modality, or
    ``reliability='uniform'``) is an :class:`UnsupportedOptionError`.

    Args:
        runner, dataloader, max_iters, val_begin, val_interval,
            dynamic_intervals: as ``IterBasedTrainLoop``.
        asi_stage (dict, optional): :class:`ASIStage`'s arguments
            (``iters``, ``dataloader``, ``optim_wrapper``,
            ``log_interval``, ``video_batch_size``); None: no stage.

    Example::

        train_cfg = dict(type='AMFIRTrainLoop', max_iters=10000,
                         val_interval=1000,
                         asi_stage=dict(iters=300, optim_wrapper=dict(
                             optimizer=dict(type='AdamW', lr=1e-3))))
    """

    def __init__(self,
                 runner,
                 dataloader,
                 max_iters: int,
                 val_begin: int = 1,
                 val_interval: int = 1000,
                 dynamic_intervals=None,
                 asi_stage: Optional[dict] = None) -> None:
        if asi_stage is not None:
            check_asi_model(runner.model)  # before building any loader
        super().__init__(runner, dataloader, max_iters, val_begin,
                         val_interval, dynamic_intervals)
        self.asi_stage = None
        if asi_stage is not None:
            self.asi_stage = ASIStage(runner, **asi_stage)

    def run_iter(self, data_batch) -> None:
        """``IterBasedTrainLoop.run_iter``; the last iteration runs the ASI
        stage between its optimiser step and its ``after_train_iter``
        hooks."""
        if self.asi_stage is None or self._iter + 1 != self._max_iters:
            return super().run_iter(data_batch)
        self.runner.call_hook(
            'before_train_iter', batch_idx=self._iter, data_batch=data_batch)
        outputs = self.runner.model.train_step(
            data_batch, optim_wrapper=self.runner.optim_wrapper)
        self.asi_stage.run()
        self.runner.call_hook(
            'after_train_iter',
            batch_idx=self._iter,
            data_batch=data_batch,
            outputs=outputs)
        self._iter += 1
