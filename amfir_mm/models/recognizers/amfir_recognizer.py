"""AMFIR: RGB and flow few-shot branches fused by active inference."""
import copy
from typing import Dict, List, Optional, Sequence, Union

import torch
import torch.nn.functional as F
from mmaction.registry import MODELS
from mmengine.model import BaseModel, ModuleDict

from ..fusion import (FUSION_MODES, episode_evidence, fuse_posteriors,
                      sharpen_reliability)
from ..utils import (build_with_input_channels, map_episode_batches,
                     pooled_videos, pretrained_inputs)
from ..utils.episodes import top1_accuracy, unbatch
from .episodic_inference import EpisodicInferenceMixin

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
class AMFIRRecognizer(EpisodicInferenceMixin, BaseModel):
    """Active Multimodal Few-shot Inference for action Recognition.

    Each of the ``S`` modalities is a :class:`FewShotRecognizer` branch
    (any MMAction2 2D backbone + a few-shot metric head) giving per-frame
    features ``(E, V * T, C)`` and per-episode logits ``(M, N)``, the
    posterior ``p_m = softmax(logits_m)``.  Per query:

    * ASI: the reliability net (:class:`ActiveSampleInference`) predicts
      ``pi_m(q)`` from label-free evidence, fitted in training to the
      free-energy target ``r`` (:class:`ASILoss`).
    * AMD: the modalities distil into each other (:class:`AMDLoss`),
      weighted by ``pi`` (``amd_weights='reliability'``), by the labelled
      target ``r`` (``'target'``; ``pi`` stays for test-time fusion) or by
      ``1/2`` (``'uniform'``: symmetric mutual learning); with
      ``AMDLoss(relation_weight > 0)`` also each query's relations to the
      support videos (cosines of the adapted video embeddings).
    * AMI: the fused posterior weights each modality by ``pi``
      (:func:`fuse_posteriors`), at meta-test sharpened to ``pi_m **
      beta / sum_s pi_s ** beta`` with ``beta = fusion_sharpness`` (1:
      ``pi`` itself; > 1: the per-query choice counts more; 0: uniform).

    Loss keys: ``loss_<m> = CE(p_m, y)``, ``loss_fused = lambda_fuse *
    CE(p_fused, y)``, ``loss_amd = lambda_AMD * AMD``, ``loss_asi =
    lambda_ASI * KL(r || pi)``, plus ``acc_<m>``, ``acc_fused`` and the mean
    ``reliability_<m>``.  ``predict`` sets per episode ``pred_score`` (fused
    posterior ``(M, N)``), ``pred_label``, ``<m>_score`` (each modality's
    posterior), ``reliability`` (AMI's weights: ``pi`` sharpened by
    ``fusion_sharpness``, ``(M, 2)``, columns ``('rgb', 'flow')``, 0 for an
    absent modality) and ``selected_modality``
    (``argmax pi``: 0 = rgb, 1 = flow); the cached meta-test runs through
    :class:`EpisodicInferenceMixin`'s methods.

    Ablations: ``modalities=('rgb',)`` / ``('flow',)`` (one branch: no
    fusion, AMD or ASI); ``reliability='uniform'`` (no ASI: ``pi = 1/2``,
    AMD and AMI still run with it); ``loss_amd=None`` (no AMD);
    ``adaptive_inference=False`` (no AMI: uniform test-time fusion).
    ``pi`` is detached where it weights the fusion and AMD
    (``detach_reliability``): only ``loss_asi`` trains the reliability net.

    The flow backbone's first convolution takes ``in_channels`` (2) inputs,
    pretrained RGB kernels cross-modality averaged in :meth:`init_weights`
    (:mod:`amfir_mm.models.utils.cross_modality`).  Load a whole trained
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
        fusion_sharpness (float): AMI's exponent ``beta >= 0`` on ``pi``
            at test time (training fuses with ``pi`` itself).
        detach_reliability (bool): detach ``pi`` in fusion and AMD.
        amd_weights (str): AMD's teacher weights, one of ``AMD_WEIGHTS``.
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
                 fusion_sharpness: float = 1.0,
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
        if not fusion_sharpness >= 0:  # also refuses NaN
            raise ValueError('fusion_sharpness must be >= 0, got '
                             f'{fusion_sharpness!r}')
        self.modalities = tuple(m for m in ALL_MODALITIES if m in modalities)
        self.input_keys = dict(DEFAULT_INPUT_KEYS, **(input_keys or {}))
        self.fusion = fusion
        self.adaptive_inference = adaptive_inference
        self.fusion_sharpness = float(fusion_sharpness)
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
            self.branches[m] = build_with_input_channels(
                cfg, self.in_channels[m])

        multimodal = len(self.modalities) > 1
        # the free-energy target r: ASI's training target, AMD's weights
        # with amd_weights='target'
        self.reliability_target = MODELS.build(loss_asi) if multimodal \
            else None
        self.asi = self.loss_asi = None
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
        with pretrained_inputs(((b.backbone, self.in_channels[m])
                                for m, b in self.branches.items()),
                               self.pretrained_in_channels):
            super().init_weights()

    def extract_feat(self,
                     inputs: Union[Dict[str, torch.Tensor], torch.Tensor],
                     test_mode: bool = False) -> Dict[str, torch.Tensor]:
        """Per-frame features of every modality.

        Args:
            inputs: ``dict(imgs=(E, V * T, 3, H, W), flow=(E, V * T, 2, H,
                W))`` (keys from ``input_keys``), or one tensor for a
                single-modality model.

        Returns:
            dict: modality -> ``(E, V * T, C)`` features.
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
        """``pi = 1 / S`` of the shape ``(..., M, S)`` of ``log_probs[...,
        0]``."""
        return log_probs.new_full(log_probs.shape[:-1],
                                  1.0 / log_probs.shape[-2])

    @property
    def _asi_uses_features(self) -> bool:
        return self.asi is not None and self.asi.uses_features

    @property
    def _support_evidence(self) -> bool:
        return self.asi is not None and bool(
            set(SUPPORT_EVIDENCE) & set(self.asi.episode_evidence))

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
            if self._asi_uses_features or self._support_evidence:
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
            ``(E, M, F)`` (:func:`episode_evidence`).  Where AMD distils
            relations (``relation_weight > 0``), also ``relations`` ``(E,
            M, S, N * K)``, each query's cosine to each support video
            (:meth:`BaseFewShotHead.batch_relations`); only in training
            mode and from ``(E, V * T, C)`` features: they feed the loss
            alone.
        """
        with_relations = (
            self.training and video_index is None and self.loss_amd is not None
            and getattr(self.loss_amd, 'relation_weight', 0) > 0)
        logits, pooled, supports, relations = [], [], [], []
        for m, branch in self.branches.items():
            head, source = feats[m], feats[m]
            if video_index is not None:
                head, source = feats[m]['head'], feats[m].get('pooled')
            logits.append(
                branch.cls_head.batch_logits(head, meta, video_index))
            if with_relations:
                relations.append(branch.cls_head.batch_relations(head, meta))
            if self._asi_uses_features:
                pooled.append(
                    pooled_videos(source, meta, 'query',
                                  video_index).flatten(0, 1))
            if self._support_evidence:
                supports.append(
                    pooled_videos(source, meta, 'support', video_index))
        logits = torch.stack(logits, dim=2)
        log_probs = F.log_softmax(logits, dim=-1)
        out = dict(logits=logits, log_probs=log_probs)
        if with_relations:
            out['relations'] = torch.stack(relations, dim=2)
        if self.asi is None:
            out['log_pi'] = self._uniform(log_probs).log()
            return out
        evidence = None
        if self.asi.episode_evidence:
            temperatures = torch.stack([
                b.cls_head.temperature.detach()
                for b in self.branches.values()
            ])
            evidence = out['episode_evidence'] = episode_evidence(
                logits.detach(), temperatures, self.asi.episode_evidence,
                supports or None, meta['num_ways'], meta['num_shots'])
            evidence = evidence.flatten(0, 1)
        log_pi = self.asi(log_probs.flatten(0, 1), pooled or None, evidence)
        out['log_pi'] = log_pi.unflatten(0, log_probs.shape[:2])
        return out

    def episode_outputs(self, feats: Dict[str, torch.Tensor],
                        data_samples: List) -> List[dict]:
        """:meth:`batch_outputs` of each of ``E`` episodes with ``(E, V * T,
        C)`` features: dicts with ``logits`` and ``log_probs`` ``(M, S,
        N)`` and ``log_pi`` ``(M, S)`` (and ``episode_evidence``), episodes
        of one shape in one batch (:func:`map_episode_batches`)."""
        return map_episode_batches(
            lambda f, meta, _: unbatch(self.batch_outputs(f, meta)), feats,
            data_samples)

    def episode_losses(self, out: dict,
                       labels: torch.Tensor) -> Dict[str, torch.Tensor]:
        """Loss terms and accuracies of one episode (see the class doc)."""
        logits, log_probs, log_pi = (out['logits'], out['log_probs'],
                                     out['log_pi'])
        losses = {}
        for s, (m, branch) in enumerate(self.branches.items()):
            losses[f'loss_{m}'] = branch.cls_head.loss_cls(
                logits[:, s], labels)
            losses[f'acc_{m}'] = top1_accuracy(logits[:, s], labels)
        if len(self.modalities) == 1:
            return losses
        weights = log_pi.exp()
        if self.detach_reliability:
            weights = weights.detach()
        fused = fuse_posteriors(log_probs, weights, self.fusion)
        if self.loss_fused is not None:
            losses['loss_fused'] = self.loss_fused(fused, labels)
        losses['acc_fused'] = top1_accuracy(fused, labels)
        if self.loss_amd is not None:
            relations = dict(relations=out['relations']) \
                if 'relations' in out else {}
            losses['loss_amd'] = self.loss_amd(
                logits, self._amd_weights(weights, log_probs, labels),
                **relations)
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

    def predict_episodes(self,
                         feats: dict,
                         data_samples: List,
                         video_index: Optional[torch.Tensor] = None) -> List:
        """Predictions of ``E`` episodes (see :meth:`predict`), from ``(E,
        V * T, C)`` features or, with ``video_index`` ``(E, V)``, from
        :meth:`cache_videos` of all videos (the cached meta-test).  Episodes
        of one shape run as one batch (:meth:`batch_outputs`: the heads on
        ``(E, ...)`` features, ASI and AMI on the ``E * M`` queries at
        once); see :meth:`EpisodicInferenceMixin.predict_episodes`."""
        for sample, fields in zip(
                data_samples,
                map_episode_batches(self._batch_predictions, feats,
                                    data_samples, video_index)):
            sample.set_pred_score(fields.pop('pred_score'))
            sample.set_pred_label(fields.pop('pred_label'))
            for name, value in fields.items():
                sample.set_field(value, name)
        return data_samples

    def _batch_predictions(
        self,
        feats: dict,
        meta: dict,
        video_index: Optional[torch.Tensor] = None
    ) -> List[Dict[str, torch.Tensor]]:
        """The prediction fields of ``E`` episodes of one shape, one dict
        per episode of tensors of its own (see the class doc)."""
        out = self.batch_outputs(feats, meta, video_index)
        log_probs = out['log_probs']
        pi = sharpen_reliability(out['log_pi'], self.fusion_sharpness)
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
        fields = dict(pred_score=scores, pred_label=scores.argmax(-1))
        fields.update({
            f'{m}_score': log_probs[..., s, :].exp()
            for s, m in enumerate(self.modalities)
        })
        fields.update(
            reliability=full_pi, selected_modality=full_pi.argmax(-1))
        return unbatch(fields, clone=True)

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
