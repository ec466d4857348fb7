"""Training-safety hooks: weights of an untrained model, non-finite losses.

* :class:`InitUntrainedModelHook` initialises the model (``init_weights``:
  pretrained backbones load their weights) before a test or validation that
  loads no checkpoint.  MMEngine's ``Runner.train()`` initialises the model,
  but ``Runner.test()`` / ``Runner.val()`` only load ``load_from``: without
  one they would evaluate the random weights of the constructors (e.g. a
  "frozen ImageNet backbone" that is not ImageNet at all).
  :func:`amfir_mm.utils.build_runner` registers it on every runner it
  builds.
* :class:`RNGStateHook` saves torch's random number generator states in
  every checkpoint and restores them when training resumes, so that random
  layers (dropout, stochastic depth) draw after a resume what they would
  have drawn without the interruption.  :func:`amfir_mm.utils.build_runner`
  registers it.
* :class:`NonFiniteLossHook` stops training at the first iteration whose
  loss is NaN or infinite, before the backward pass and the optimiser step,
  so the weights (in memory and in the checkpoints) stay the last finite
  ones.  ``configs/_base_/default_runtime.py`` registers it in
  ``custom_hooks``.
"""
import math
from typing import Callable, Dict, Optional, Tuple

import torch
from mmaction.registry import HOOKS
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper


class NonFiniteLossError(FloatingPointError):
    """A training loss became NaN or infinite."""


def _unwrap(model):
    return model.module if is_model_wrapper(model) else model


@HOOKS.register_module()
class InitUntrainedModelHook(Hook):
    """Initialise the model before a test / validation that loaded nothing.

    Acts in ``before_test`` / ``before_val`` (after ``Runner.test()`` /
    ``Runner.val()`` tried ``load_from``) when no checkpoint was loaded and
    the model was never initialised (``BaseModule.is_init``: a model that
    was trained in this runner is left alone).  Initialisation is
    MMEngine's own (``Runner._init_model_weights``: ``init_weights`` of the
    unwrapped model, parameters broadcast from rank 0).  Weights set by
    hand (``runner.model.load_state_dict``) before ``runner.test()`` would
    be re-initialised: load them through ``load_from``, or set
    ``model.is_init = True``.
    """

    priority = 'VERY_HIGH'

    def _init_if_untrained(self, runner) -> None:
        model = _unwrap(runner.model)
        # Runner keeps "a checkpoint was loaded or resumed" in _has_loaded
        if getattr(runner, '_has_loaded', False) or getattr(
                model, 'is_init', True) or not hasattr(model, 'init_weights'):
            return
        runner.logger.info(
            'no checkpoint loaded: initialising the model (init_weights; '
            'pretrained backbones load their weights)')
        runner._init_model_weights()

    def before_test(self, runner) -> None:
        self._init_if_untrained(runner)

    def before_val(self, runner) -> None:
        self._init_if_untrained(runner)


def _rng_state() -> dict:
    """This process's torch RNG states: ``torch`` (CPU generator) and, if
    CUDA is in use, ``cuda`` (one state per device)."""
    state = dict(torch=torch.get_rng_state())
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state['cuda'] = torch.cuda.get_rng_state_all()
    return state


@HOOKS.register_module()
class RNGStateHook(Hook):
    """Save torch's RNG states in checkpoints; restore them on resume.

    MMEngine's checkpoints hold the model, optimiser, schedulers and the
    seed, but not the random number generators' states, so a resumed run's
    dropout / stochastic-depth masks restart from the seeded state instead
    of continuing: killed and resumed, it ends with other weights than an
    uninterrupted run.  This hook writes ``checkpoint['rng_state'] =
    dict(torch=ByteTensor, cuda=[ByteTensor per device])`` (tensors only:
    safe for ``weights_only`` loading) and, when training starts at a
    resumed iteration (``before_train`` with ``runner.iter > 0``), sets
    those states again.  Plain loading (``load_from`` without resume) does
    not touch the generators.

    Distributed: MMEngine saves checkpoints on rank 0 only.  With
    ``randomness.diff_rank_seed`` every rank draws its own stream, so after
    each training iteration the ranks' states are gathered (one small
    collective) and the checkpoint also holds ``per_rank``: one such dict
    per rank; on resume with as many processes, each rank gets its own
    back (with another number of processes, the ranks keep their seeded
    states and a warning says so).  Without ``diff_rank_seed`` the ranks
    draw the same stream and rank 0's state is every rank's.

    NumPy's and Python's generators are left alone: the data pipelines use
    them (in the dataloader workers, which MMEngine seeds per worker, or in
    the main process with ``num_workers=0``), and MMEngine's resume replays
    the dataloader up to the resumed iteration, which reproduces their
    states.
    """

    priority = 'VERY_HIGH'

    def __init__(self) -> None:
        self._resumed_state = None
        self._per_rank = None

    @staticmethod
    def _ranks_differ(runner) -> bool:
        from mmengine.dist import get_world_size
        return get_world_size() > 1 and bool(
            (runner.cfg.get('randomness') or {}).get('diff_rank_seed'))

    def after_train_iter(self,
                         runner,
                         batch_idx: int,
                         data_batch=None,
                         outputs=None) -> None:
        # before CheckpointHook (priority VERY_LOW) may save on rank 0
        if self._ranks_differ(runner):
            from mmengine.dist import all_gather_object
            self._per_rank = [{
                k:
                v.cpu() if torch.is_tensor(v) else [t.cpu() for t in v]
                for k, v in state.items()
            } for state in all_gather_object(_rng_state())]

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        state = _rng_state()
        if self._per_rank is not None:
            state['per_rank'] = self._per_rank
        checkpoint['rng_state'] = state

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        self._resumed_state = checkpoint.get('rng_state')

    def before_train(self, runner) -> None:
        state, self._resumed_state = self._resumed_state, None
        if state is None or runner.iter == 0:
            return
        if self._ranks_differ(runner):
            from mmengine.dist import get_world_size
            per_rank = state.get('per_rank') or []
            if len(per_rank) != get_world_size():
                held = f"{len(per_rank)} ranks'" if per_rank else \
                    "rank 0's only"
                runner.logger.warning(
                    f'diff_rank_seed: the checkpoint holds the RNG states of '
                    f'{held}, this run has {get_world_size()} ranks: rank '
                    f'{runner.rank} keeps its seeded state')
                return
            state = per_rank[runner.rank]
        torch.set_rng_state(state['torch'])
        if 'cuda' in state and torch.cuda.is_available():
            if len(state['cuda']) == torch.cuda.device_count():
                torch.cuda.set_rng_state_all(state['cuda'])
            else:
                runner.logger.warning(
                    f'the checkpoint holds {len(state["cuda"])} CUDA RNG '
                    f'states, this machine has {torch.cuda.device_count()} '
                    'devices: CUDA RNG states not restored')
        runner.logger.info(
            f'restored the RNG states of iteration {runner.iter}')


def non_finite_terms(losses: Dict[str, torch.Tensor]) -> Dict[str, float]:
    """The loss terms (keys containing ``'loss'``, as MMEngine's
    ``BaseModel.parse_losses`` sums them) that are not finite, as
    ``{name: value}`` (a tensor term is non-finite if any element is)."""
    bad = {}
    for name, value in losses.items():
        if 'loss' not in name:
            continue
        values = value if isinstance(value, (list, tuple)) else [value]
        for v in values:
            v = torch.as_tensor(v).detach()
            if not torch.isfinite(v).all():
                finite = torch.isfinite(v)
                bad[name] = float(v[~finite].flatten()[0])
                break
    return bad


@HOOKS.register_module()
class NonFiniteLossHook(Hook):
    """Stop training when a loss term is NaN or infinite.

    From ``before_train`` to ``after_train`` the model's ``parse_losses``
    (called by ``BaseModel.train_step`` and MMEngine's DDP wrapper between
    the forward pass and ``optim_wrapper.update_params``) is wrapped: if the
    summed loss is not finite, :class:`NonFiniteLossError` is raised,
    naming the iteration (1-based, as the training log counts it) and every
    non-finite loss term.  Nothing has been back-propagated or stepped for
    that iteration, so the model keeps the weights of the previous
    iteration and no non-finite checkpoint is written.

    Register it in ``custom_hooks`` (``default_runtime.py`` does); switch
    it off with ``custom_hooks = []`` or ``dict(type='NonFiniteLossHook',
    enabled=False)``.

    Args:
        enabled (bool): check the loss; ``False`` makes the hook a no-op.
    """

    priority = 'VERY_HIGH'

    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled
        self._model = None

    def before_train(self, runner) -> None:
        if not self.enabled:
            return
        model = _unwrap(runner.model)
        original: Callable = model.parse_losses
        max_iters: Optional[int] = getattr(runner, 'max_iters', None)

        def parse_losses(losses: Dict[str, torch.Tensor]
                         ) -> Tuple[torch.Tensor, dict]:
            total, log_vars = original(losses)
            if not math.isfinite(float(total.detach())):
                bad = non_finite_terms(losses) or dict(loss=float(total))
                terms = ', '.join(f'{k} = {v}' for k, v in bad.items())
                of = f' of {max_iters}' if max_iters else ''
                raise NonFiniteLossError(
                    f'non-finite loss at iteration {runner.iter + 1}{of}: '
                    f'{terms}; training stopped before the backward pass '
                    f'(the weights are those after iteration {runner.iter}'
                    '). Switch this check off with custom_hooks=[] (see '
                    'amfir_mm.engine.hooks.NonFiniteLossHook)')
            return total, log_vars

        model.parse_losses = parse_losses  # instance attribute: a wrapper
        self._model = model

    def after_train(self, runner) -> None:
        if self._model is not None:
            del self._model.parse_losses  # the class's method again
            self._model = None
