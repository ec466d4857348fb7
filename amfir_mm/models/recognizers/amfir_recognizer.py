"""AMFIR: RGB and flow few-shot branches fused by active inference."""
import copy
from contextlib import ExitStack
from typing import Dict, List, Optional, Sequence, Union

import torch
import torch.nn.functional as F
from mmaction.registry import MODELS
from mmengine.model import BaseModel, ModuleDict

from ..fusion import FUSION_MODES, episode_evidence, fuse_posteriors
from ..heads import (episode_shape, gather_videos, split_episode,
                     split_episode_index)
from ..utils import (first_conv, loads_pretrained, pretrained_at_build,
                     pretrained_input_channels, set_input_channels)

ALL_MODALITIES = ('rgb', 'flow')
AMD_WEIGHTS = ('reliability', 'target', 'uniform')
SUPPORT_EVIDENCE = ('prototype_spread', 'support_consistency')
DEFAULT_IN_CHANNELS = dict(rgb=3, flow=2)
DEFAULT_INPUT_KEYS = dict(rgb='imgs', flow='flow')
DEFAULT_PREPROCESSOR = dict(
    type='MultiModalDataPreprocessor',
    preprocessors=dict(
        imgs=dict(
            type='ActionDataPreprocessor',
            mean=[123.675, 116.28, 103.53],
            std=[58.395, 57.12, 57.375],
            format_shape='NCHW'),
        flow=dict(
            type='ActionDataPreprocessor',
            mean=[128, 128],
            std=[128, 128],
            format_shape='NCHW')))


@MODELS.register_module()
class AMFIRRecognizer(BaseModel):
    """Active Multimodal Few-shot Inference for action Recognition.

    Each modality is a :class:`FewShotRecognizer` branch (any MMAction2 2D
    backbone + a few-shot metric head) giving per-frame features
    ``(B, V * T, C)`` and per-episode logits ``(N * Q, N)``; the posterior
    of modality ``m`` is ``p_m = softmax(logits_m)``.  Per query:

    * ASI: the reliability net (:class:`ActiveSampleInference`) predicts
      ``pi_m(q)`` from label-free evidence; in training it is fitted to the
      free-energy target ``r`` (:class:`ASILoss`).
    * AMD: the modalities distil into each other (:class:`AMDLoss`),
      weighted by ``pi`` (``amd_weights='reliability'``), by the labelled
      free-energy target ``r`` (``'target'``: the label is known in
      meta-training; ``pi`` stays for test-time fusion) or by ``1/2``
      (``'uniform'``: symmetric mutual learning).
    * AMI: the fused posterior weights each modality by ``pi``
      (:func:`fuse_posteriors`).

    Loss (each term a separate key): ``loss_<m> = CE(p_m, y)`` per
    modality, ``loss_fused = lambda_fuse * CE(p_fused, y)``,
    ``loss_amd = lambda_AMD * AMD``, ``loss_asi = lambda_ASI * KL(r || pi)``;
    plus ``acc_<m>``, ``acc_fused`` and the mean ``reliability_<m>``.
    ``predict`` sets per episode ``pred_score`` (fused posterior
    ``(N * Q, N)``), ``pred_label``, ``<m>_score`` (each modality's
    posterior), ``reliability`` (``pi``, ``(N * Q, 2)``, columns
    ``('rgb', 'flow')``, 0 for an absent modality) and
    ``selected_modality`` (``argmax pi``: 0 = rgb, 1 = flow).

    Ablation switches: ``modalities=('rgb',)`` / ``('flow',)`` build one
    branch only (no fusion, AMD or ASI); ``reliability='uniform'`` (no ASI:
    ``pi = 1/2``, no reliability net, AMD and AMI still run with it);
    ``loss_amd=None`` (no AMD); ``adaptive_inference=False`` (no AMI: the
    test-time fusion uses uniform weights; training is unchanged).

    ``pi`` is detached where it weights the fusion and AMD
    (``detach_reliability``), so only ``loss_asi`` trains the reliability
    net and the branches get no gradient through ``pi``.

    The flow branch's backbone takes ``in_channels`` (2) inputs: its first
    convolution is adapted at build time and pretrained RGB weights are
    cross-modality averaged in :meth:`init_weights`; from scratch, each
    input channel has its own random kernel (see
    :mod:`amfir_mm.models.utils.cross_modality`).  Load a whole trained
    AMFIR checkpoint with ``load_from``.

    Args:
        rgb (dict): RGB branch: ``backbone``, ``cls_head`` and optionally
            ``type`` (default ``'FewShotRecognizer'``), ``in_channels``
            (default 3).
        flow (dict): flow branch, likewise (``in_channels`` default 2).
        modalities (Sequence[str]): branches to build, a subset of
            ``('rgb', 'flow')``.
        input_keys (dict): key of each modality in ``inputs``.
        reliability (str): ``'asi'`` or ``'uniform'``.
        asi (dict): reliability net options (``ActiveSampleInference``).
        fusion (str): AMI mode, ``'log_linear'`` or ``'mixture'``.
        adaptive_inference (bool): weight by ``pi`` at test time.
        detach_reliability (bool): detach ``pi`` in fusion and AMD.
        amd_weights (str): the teacher weights of AMD, one of
            ``AMD_WEIGHTS`` (see above).
        loss_fused (dict, optional): loss on the fused log-posterior.
        loss_amd (dict, optional): :class:`AMDLoss` config.
        loss_asi (dict): :class:`ASILoss` config.
        pretrained_in_channels (int): input channels of pretrained
            backbone checkpoints.
        data_preprocessor (dict): defaults to a
            ``MultiModalDataPreprocessor`` for ``imgs`` and ``flow``.
    """

    def __init__(self,
                 rgb: Optional[dict] = None,
                 flow: Optional[dict] = None,
                 modalities: Sequence[str] = ALL_MODALITIES,
                 input_keys: Optional[dict] = None,
                 reliability: str = 'asi',
                 asi: Optional[dict] = None,
                 fusion: str = 'log_linear',
                 adaptive_inference: bool = True,
                 detach_reliability: bool = True,
                 amd_weights: str = 'reliability',
                 loss_fused: Optional[dict] = dict(type='CrossEntropyLoss'),
                 loss_amd: Optional[dict] = dict(type='AMDLoss'),
                 loss_asi: dict = dict(type='ASILoss'),
                 pretrained_in_channels: int = 3,
                 data_preprocessor: Optional[dict] = None) -> None:
        super().__init__(
            data_preprocessor=copy.deepcopy(data_preprocessor
                                            or DEFAULT_PREPROCESSOR))
        unknown = set(modalities) - set(ALL_MODALITIES)
        if unknown or not modalities:
            raise ValueError(f'modalities must be a non-empty subset of '
                             f'{ALL_MODALITIES}, got {modalities}')
        if reliability not in ('asi', 'uniform'):
            raise ValueError(f"reliability must be 'asi' or 'uniform', got "
                             f'{reliability!r}')
        if amd_weights not in AMD_WEIGHTS:
            raise ValueError(f'amd_weights must be one of {AMD_WEIGHTS}, '
                             f'got {amd_weights!r}')
        if fusion not in FUSION_MODES:
            raise ValueError(f'fusion must be one of {FUSION_MODES}, got '
                             f'{fusion!r}')
        self.modalities = tuple(m for m in ALL_MODALITIES if m in modalities)
        self.input_keys = dict(DEFAULT_INPUT_KEYS, **(input_keys or {}))
        self.fusion = fusion
        self.adaptive_inference = adaptive_inference
        self.detach_reliability = detach_reliability
        self.amd_weights = amd_weights
        self.pretrained_in_channels = pretrained_in_channels

        branch_cfgs = dict(rgb=rgb, flow=flow)
        self.branches = ModuleDict()  # MMEngine's: init_weights recurses
        self.in_channels: Dict[str, int] = {}
        for m in self.modalities:
            if branch_cfgs[m] is None:
                raise ValueError(f'modality {m!r} is used but its branch '
                                 'config is missing')
            cfg = dict(type='FewShotRecognizer')
            cfg.update(copy.deepcopy(dict(branch_cfgs[m])))
            self.in_channels[m] = cfg.pop('in_channels',
                                          DEFAULT_IN_CHANNELS[m])
            built_pretrained = pretrained_at_build(cfg.get('backbone') or {})
            branch = MODELS.build(cfg)
            # a pretrained kernel is averaged, a random one re-initialised
            set_input_channels(
                first_conv(branch.backbone),
                self.in_channels[m],
                average=built_pretrained)
            self.branches[m] = branch

        multimodal = len(self.modalities) > 1
        self.asi = self.loss_asi = None
        # the free-energy target r: ASI's training target, AMD's weights
        # with amd_weights='target'
        self.reliability_target = MODELS.build(loss_asi) if multimodal \
            else None
        if multimodal and reliability == 'asi':
            asi_cfg = dict(
                type='ActiveSampleInference',
                num_modalities=len(self.modalities))
            asi_cfg.update(asi or {})
            self.asi = MODELS.build(asi_cfg)
            self.loss_asi = self.reliability_target
        self.loss_amd = (
            MODELS.build(loss_amd) if multimodal and loss_amd else None)
        self.loss_fused = (
            MODELS.build(loss_fused) if multimodal and loss_fused else None)

    def init_weights(self) -> None:
        """Initialise as usual, loading pretrained RGB weights into the
        non-RGB branches by cross-modality averaging (branches trained from
        scratch keep a first convolution initialised for their inputs)."""
        with ExitStack() as stack:
            for m, branch in self.branches.items():
                if (self.in_channels[m] != self.pretrained_in_channels
                        and loads_pretrained(branch.backbone)):
                    stack.enter_context(
                        pretrained_input_channels(branch.backbone,
                                                  self.in_channels[m],
                                                  self.pretrained_in_channels))
            super().init_weights()

    # -- features and per-episode outputs ---------------------------------
    def extract_feat(self,
                     inputs: Union[Dict[str, torch.Tensor], torch.Tensor],
                     test_mode: bool = False) -> Dict[str, torch.Tensor]:
        """Per-frame features of every modality.

        Args:
            inputs: ``dict(imgs=(B, V * T, 3, H, W), flow=(B, V * T, 2, H,
                W))`` (keys from ``input_keys``), or one tensor for a
                single-modality model.

        Returns:
            dict: modality -> ``(B, V * T, C)`` features.
        """
        if isinstance(inputs, torch.Tensor):
            if len(self.modalities) != 1:
                raise TypeError('a multimodal AMFIRRecognizer needs a dict '
                                'of inputs per modality')
            inputs = {self.input_keys[self.modalities[0]]: inputs}
        feats = {}
        for m, branch in self.branches.items():
            key = self.input_keys[m]
            if key not in inputs:
                raise KeyError(f'the {m} branch reads inputs[{key!r}], but '
                               f'the inputs hold {sorted(inputs)}')
            feats[m], _ = branch.extract_feat(inputs[key], test_mode=test_mode)
        return feats

    def _uniform(self, log_probs: torch.Tensor) -> torch.Tensor:
        """``pi = 1 / S`` of the shape of ``log_probs[..., 0]`` (``(...,
        M, S)``)."""
        return log_probs.new_full(log_probs.shape[:-1],
                                  1.0 / log_probs.shape[-2])

    @property
    def _asi_uses_features(self) -> bool:
        return self.asi is not None and self.asi.uses_features

    @property
    def _episode_evidence(self) -> tuple:
        return () if self.asi is None else self.asi.episode_evidence

    @property
    def _needs_pooled(self) -> bool:
        return self._asi_uses_features or bool(
            set(SUPPORT_EVIDENCE) & set(self._episode_evidence))

    def cache_videos(self, feats: Dict[str, torch.Tensor]) -> dict:
        """Per-video work of the cached meta-test, done once.

        Args:
            feats: modality -> ``(num_videos, T, C)`` features of every
                video the episodes draw from.

        Returns:
            dict: modality -> ``dict(head=...)``, its head's
            :meth:`BaseFewShotHead.cache_videos`, plus ``pooled``
            ``(num_videos, C)`` frame means where ASI reads features or
            support evidence.
        """
        cache = {}
        for m, branch in self.branches.items():
            cache[m] = dict(head=branch.cls_head.cache_videos(feats[m]))
            if self._needs_pooled:
                cache[m]['pooled'] = feats[m].mean(1)
        return cache

    def batch_outputs(self,
                      feats: dict,
                      meta: dict,
                      video_index: Optional[torch.Tensor] = None
                      ) -> Dict[str, torch.Tensor]:
        """Logits, log-posteriors and ``log pi`` of a batch of episodes of
        one shape.

        Args:
            feats: modality -> ``(E, V * T, C)`` features of ``E`` episodes,
                or, with ``video_index``, :meth:`cache_videos` of all
                videos.
            meta: their shared ``num_ways``, ``num_shots``, ``num_queries``.
            video_index: ``(E, V)`` the episodes' video indices into the
                cache, support first.

        Returns:
            dict: ``logits`` and ``log_probs`` ``(E, M, S, N)`` (the
            modalities in ``self.modalities`` order) and ``log_pi``
            ``(E, M, S)``; ASI runs on the ``E * M`` queries at once.
            Where ASI reads episode evidence, also ``episode_evidence``
            ``(E, M, F)`` (:func:`episode_evidence`).
        """
        use_feats, groups = self._asi_uses_features, self._episode_evidence
        logits, pooled, supports = [], [], []
        for m, branch in self.branches.items():
            head_feats = feats[m] if video_index is None else feats[m]['head']
            logits.append(
                branch.cls_head.batch_logits(head_feats, meta, video_index))
            if use_feats:
                pooled.append(
                    _pooled_videos(feats[m], meta, video_index,
                                   'query').flatten(0, 1))
            if set(SUPPORT_EVIDENCE) & set(groups):
                supports.append(
                    _pooled_videos(feats[m], meta, video_index, 'support'))
        logits = torch.stack(logits, dim=2)
        log_probs = F.log_softmax(logits, dim=-1)
        out = dict(logits=logits, log_probs=log_probs)
        if self.asi is not None:
            episode = None
            if groups:
                temperatures = torch.stack([
                    b.cls_head.temperature.detach()
                    for b in self.branches.values()
                ])
                episode = out['episode_evidence'] = episode_evidence(
                    logits.detach(), temperatures, groups, supports or None,
                    meta['num_ways'], meta['num_shots'])
                episode = episode.flatten(0, 1)
            log_pi = self.asi(
                log_probs.flatten(0, 1), pooled if use_feats else None,
                episode)
            out['log_pi'] = log_pi.unflatten(0, log_probs.shape[:2])
        else:
            out['log_pi'] = self._uniform(log_probs).log()
        return out

    def episode_outputs(self, feats: Dict[str, torch.Tensor],
                        data_samples: List) -> List[dict]:
        """Logits, log-posteriors and ``log pi`` of every episode.

        Episodes of one shape (see :func:`episode_shape`) run as one batch
        (:meth:`batch_outputs`), others one by one.

        Returns:
            ``B`` dicts with ``logits`` and ``log_probs`` ``(M, S, N)`` (the
            modalities in ``self.modalities`` order) and ``log_pi``
            ``(M, S)``.
        """
        shape = episode_shape(data_samples)
        if shape is not None:
            return _unbatch(self.batch_outputs(feats, shape))
        return [
            _unbatch(
                self.batch_outputs({
                    m: f[b, None]
                    for m, f in feats.items()
                }, sample.metainfo))[0]
            for b, sample in enumerate(data_samples)
        ]

    # -- modes --------------------------------------------------------------
    def episode_losses(self, out: dict,
                       labels: torch.Tensor) -> Dict[str, torch.Tensor]:
        """Loss terms and accuracies of one episode (see the class doc)."""
        logits, log_probs, log_pi = (out['logits'], out['log_probs'],
                                     out['log_pi'])
        losses = {}
        for s, (m, branch) in enumerate(self.branches.items()):
            losses[f'loss_{m}'] = branch.cls_head.loss_cls(
                logits[:, s], labels)
            losses[f'acc_{m}'] = _accuracy(logits[:, s], labels)
        if len(self.modalities) == 1:
            return losses
        weights = log_pi.exp()
        if self.detach_reliability:
            weights = weights.detach()
        fused = fuse_posteriors(log_probs, weights, self.fusion)
        if self.loss_fused is not None:
            losses['loss_fused'] = self.loss_fused(fused, labels)
        losses['acc_fused'] = _accuracy(fused, labels)
        if self.loss_amd is not None:
            losses['loss_amd'] = self.loss_amd(
                logits, self._amd_weights(weights, log_probs, labels))
        if self.loss_asi is not None:
            losses['loss_asi'] = self.loss_asi(log_pi, log_probs.detach(),
                                               labels)
        for s, m in enumerate(self.modalities):
            losses[f'reliability_{m}'] = log_pi[:, s].exp().mean().detach()
        return losses

    def _amd_weights(self, pi: torch.Tensor, log_probs: torch.Tensor,
                     labels: torch.Tensor) -> torch.Tensor:
        """AMD's ``(M, S)`` teacher weights (see ``amd_weights``)."""
        if self.amd_weights == 'target':
            return self.reliability_target.target(log_probs.detach(), labels)
        if self.amd_weights == 'uniform':
            return self._uniform(log_probs)
        return pi

    def loss(self, inputs, data_samples: List,
             **kwargs) -> Dict[str, torch.Tensor]:
        """Loss terms averaged over the batch's episodes."""
        feats = self.extract_feat(inputs)
        episodes = [
            self.episode_losses(out, sample.gt_label.to(out['logits'].device))
            for out, sample in zip(
                self.episode_outputs(feats, data_samples), data_samples)
        ]
        return {
            k: torch.stack([ep[k] for ep in episodes]).mean()
            for k in episodes[0]
        }

    def predict(self, inputs, data_samples: List, **kwargs) -> List:
        """Set the fused and per-modality posteriors and ``pi`` per episode.
        """
        return self.predict_episodes(
            self.extract_feat(inputs, test_mode=True), data_samples)

    @torch.no_grad()
    def embed_videos(self, data: dict) -> Dict[str, torch.Tensor]:
        """Per-frame features of a collated batch of single videos.

        Used by the cached-embedding meta-test
        (:mod:`amfir_mm.engine.cached_episode_loops`).

        Returns:
            dict: modality -> ``(B, T, C)``.
        """
        data = self.data_preprocessor(data, False)
        return self.extract_feat(data['inputs'], test_mode=True)

    def predict_episodes(self,
                         feats: dict,
                         data_samples: List,
                         video_index: Optional[torch.Tensor] = None) -> List:
        """Predictions of a batch of episodes (see :meth:`predict`).

        Used by :meth:`predict` and, on :meth:`cache_videos` of all videos,
        by the cached meta-test loops
        (:mod:`amfir_mm.engine.cached_episode_loops`).  Episodes of one
        shape (see :func:`episode_shape`) run as one batch: the heads on
        ``(E, ...)`` features, ASI and AMI on the ``E * M`` queries at once.

        Args:
            feats: modality -> ``(B, V * T, C)`` features, or, with
                ``video_index``, :meth:`cache_videos` of all videos.
            data_samples: the ``B`` episodes' samples.
            video_index: ``(B, V)`` the episodes' video indices into the
                cache, support first (for episodes of several shapes, ``B``
                tensors ``(V_b, )``).

        Returns:
            list: ``data_samples``, with the prediction fields set.
        """
        shape = episode_shape(data_samples)
        if shape is None:  # episodes of several shapes: one by one
            for b, sample in enumerate(data_samples):
                if video_index is None:
                    self.predict_episodes(
                        {
                            m: f[b, None]
                            for m, f in feats.items()
                        }, [sample])
                else:
                    self.predict_episodes(feats, [sample],
                                          video_index[b][None])
            return data_samples
        out = self.batch_outputs(feats, shape, video_index)
        log_probs, pi = out['log_probs'], out['log_pi'].exp()
        if len(self.modalities) > 1:
            weights = pi if self.adaptive_inference else \
                self._uniform(log_probs)
            fused = fuse_posteriors(
                log_probs.flatten(0, 1), weights.flatten(0, 1), self.fusion)
            scores = fused.unflatten(0, log_probs.shape[:2]).exp()
        else:
            scores = log_probs[..., 0, :].exp()
        full_pi = pi.new_zeros(*pi.shape[:-1], len(ALL_MODALITIES))
        full_pi[..., [ALL_MODALITIES.index(m) for m in self.modalities]] = pi
        fields = {
            f'{m}_score': log_probs[..., s, :].exp()
            for s, m in enumerate(self.modalities)
        }
        fields.update(
            reliability=full_pi, selected_modality=full_pi.argmax(-1))
        # per-episode clones: a view would keep (and pickle, e.g. in
        # DumpResults) the whole batch
        scores, labels = _per_episode(scores), _per_episode(scores.argmax(-1))
        fields = {k: _per_episode(v) for k, v in fields.items()}
        for e, sample in enumerate(data_samples):
            sample.set_pred_score(scores[e])
            sample.set_pred_label(labels[e])
            for name, values in fields.items():
                sample.set_field(values[e], name)
        return data_samples

    def _forward(self, inputs, **kwargs) -> Dict[str, torch.Tensor]:
        """``tensor`` mode: the per-frame features of every modality."""
        return self.extract_feat(inputs)

    def forward(self,
                inputs,
                data_samples: Optional[List] = None,
                mode: str = 'tensor',
                **kwargs):
        """MMEngine's entry: ``mode`` is ``'loss'``, ``'predict'`` or
        ``'tensor'`` (as :class:`mmaction.models.BaseRecognizer`)."""
        if mode == 'tensor':
            return self._forward(inputs, **kwargs)
        if mode == 'predict':
            return self.predict(inputs, data_samples, **kwargs)
        if mode == 'loss':
            return self.loss(inputs, data_samples, **kwargs)
        raise RuntimeError(f'Invalid mode "{mode}". Only supports loss, '
                           'predict and tensor mode')


def _pooled_videos(feats, meta: dict, video_index: Optional[torch.Tensor],
                   part: str) -> torch.Tensor:
    """Temporally pooled features of the queries ``(E, M, C)`` or the
    supports ``(E, N * K, C)`` (``part``) of ``E`` episodes, from ``(E,
    V * T, C)`` features or, with ``video_index`` ``(E, V)``, from the
    ``pooled`` ``(num_videos, C)`` of :meth:`AMFIRRecognizer.cache_videos`.
    """
    which = 0 if part == 'support' else 1
    if video_index is None:
        return split_episode(feats, meta)[which].mean(2)
    index = split_episode_index(video_index, meta)[which]
    return gather_videos(feats['pooled'], index)


def _unbatch(outputs: Dict[str, torch.Tensor]) -> List[dict]:
    """A dict of ``(E, ...)`` tensors -> ``E`` dicts of ``(...)`` ones."""
    return [dict(zip(outputs, values)) for values in zip(*outputs.values())]


def _per_episode(batch: torch.Tensor) -> List[torch.Tensor]:
    """``(E, ...)`` -> ``E`` tensors ``(...)`` with storages of their own."""
    return [t.clone() for t in batch.unbind()]


def _accuracy(scores: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    return (scores.argmax(1) == labels).float().mean().detach()
