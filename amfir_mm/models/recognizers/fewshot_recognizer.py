"""Single-modality few-shot recogniser: a stock backbone + a metric head."""
from typing import Any, List, Optional

import torch
import torch.nn.functional as F
from mmaction.models import Recognizer2D
from mmaction.registry import MODELS

from .episodic_inference import EpisodicInferenceMixin


@MODELS.register_module()
class FewShotRecognizer(EpisodicInferenceMixin, Recognizer2D):
    """Few-shot recogniser over episodes from :class:`EpisodicDataset`.

    The backbone is any MMAction2 2D backbone config (``ResNet``,
    ``ResNetTSM`` with ``num_segments = T``, ``MobileNetV2``, ...) or
    MMAction2's ``torchvision.`` / ``timm.`` / ``mmpretrain.`` wrappers,
    built and run exactly as by :class:`mmaction.models.Recognizer2D`; the
    ``cls_head`` is a few-shot metric head (:class:`BaseFewShotHead`).
    ``loss`` / ``predict`` / ``tensor`` modes come from ``BaseRecognizer``;
    the cached meta-test's interface from :class:`EpisodicInferenceMixin`.
    """

    def extract_feat(self,
                     inputs: torch.Tensor,
                     stage: str = 'backbone',
                     data_samples=None,
                     test_mode: bool = False,
                     **kwargs) -> tuple:
        """Per-frame features.

        In test mode with ``test_cfg.max_testing_views`` set, the backbone
        runs on chunks of at most that many frames (MMAction2's "views":
        the ``E * V * T`` flattened frames) to bound memory, as
        ``Recognizer2D`` does; the features are the same.

        Args:
            inputs: ``(E, V * T, C_in, H, W)`` normalised frames of ``E``
                episodes of ``V`` videos of ``T`` frames (or of ``E``
                single videos: ``V = 1``).
            test_mode: chunk by ``test_cfg.max_testing_views`` if set.

        Returns:
            tuple: ``(E, V * T, C)`` spatially pooled backbone features and
            an empty kwargs dict.
        """
        batch, frames = inputs.shape[:2]
        views = self._max_testing_views() if test_mode else None
        if views:
            chunks = inputs.flatten(0, 1).split(views)
            x = torch.cat([self._frame_feats(c[None]) for c in chunks])
        else:
            x = self._frame_feats(inputs)
        return x.reshape(batch, frames, -1), dict()

    def _max_testing_views(self) -> Optional[int]:
        """``test_cfg.max_testing_views`` (``None`` if unset), checked.

        ``Recognizer2D.extract_feat`` cannot chunk for us: its ``test_mode``
        path calls ``self.backbone.get('num_segments')``, which an
        ``nn.Module`` backbone does not have (mmaction2 1.2.0).
        """
        views = (self.test_cfg or {}).get('max_testing_views', None)
        if not views:
            return None
        if not isinstance(views, int) or views < 1:
            raise ValueError('test_cfg.max_testing_views must be a positive '
                             f'int, got {views!r}')
        segments = getattr(self.backbone, 'num_segments', None)
        if segments and views % segments:
            raise ValueError(
                f'test_cfg.max_testing_views ({views}) must be a multiple of '
                f"the backbone's num_segments ({segments}): a chunk holds "
                'whole videos')
        return views

    def _frame_feats(self, inputs: torch.Tensor) -> torch.Tensor:
        """``(E, V * T, C_in, H, W)`` frames (or a chunk, ``(1, views, C_in,
        H, W)``) -> ``(E * V * T, C)`` pooled features (the backbone run as
        by ``Recognizer2D``)."""
        x, _ = super().extract_feat(inputs, stage='backbone')
        if isinstance(x, (tuple, list)):  # multi-stage backbones: last one
            x = x[-1]
        if x.dim() == 4:  # (E * V * T, C, h, w)
            x = F.adaptive_avg_pool2d(x, 1)
        return x.flatten(1)

    def cache_videos(self, videos: torch.Tensor) -> Any:
        """The head's per-video cache for the cached meta-test
        (:meth:`BaseFewShotHead.cache_videos`) of ``(num_videos, T, C)``
        features."""
        return self.cls_head.cache_videos(videos)

    def predict_episodes(self,
                         feats: Any,
                         data_samples: List,
                         video_index: Optional[torch.Tensor] = None) -> List:
        """Predict a batch of episodes from ``(E, V * T, C)`` features or,
        with ``video_index`` ``(E, V)``, from :meth:`cache_videos` of all
        videos (the cached meta-test,
        :mod:`amfir_mm.engine.cached_episode_loops`); the head batches
        episodes of one shape (see :meth:`BaseFewShotHead.episode_logits`).
        """
        return self.cls_head.predict(
            feats, data_samples, video_index=video_index)
