"""Single-modality few-shot recogniser: a stock backbone + a metric head."""
from typing import Any, List, Optional

import torch
import torch.nn.functional as F
from mmaction.models import Recognizer2D
from mmaction.registry import MODELS


@MODELS.register_module()
class FewShotRecognizer(Recognizer2D):
    """Few-shot recogniser over episodes from :class:`EpisodicDataset`.

    The backbone is any MMAction2 2D backbone config (``ResNet``,
    ``ResNetTSM`` with ``num_segments = T``, ``MobileNetV2``, ...) or
    MMAction2's ``torchvision.`` / ``timm.`` / ``mmpretrain.`` wrappers,
    built and run exactly as by :class:`mmaction.models.Recognizer2D`; the
    ``cls_head`` is a few-shot metric head (:class:`BaseFewShotHead`).
    ``loss`` / ``predict`` / ``tensor`` modes come from ``BaseRecognizer``.
    """

    def extract_feat(self, inputs: torch.Tensor, stage: str = 'backbone',
                     data_samples=None, test_mode: bool = False,
                     **kwargs) -> tuple:
        """Per-frame features.

        Args:
            inputs: ``(B, V * T, C, H, W)`` normalised frames of ``B``
                episodes of ``V`` videos of ``T`` frames.

        Returns:
            tuple: ``(B, V * T, C')`` spatially pooled backbone features and
            an empty kwargs dict.
        """
        batch, frames = inputs.shape[:2]
        x, _ = super().extract_feat(inputs, stage='backbone')
        if isinstance(x, (tuple, list)):  # multi-stage backbones: last one
            x = x[-1]
        if x.dim() == 4:  # (B * V * T, C', h, w)
            x = F.adaptive_avg_pool2d(x, 1).flatten(1)
        return x.reshape(batch, frames, -1), dict()

    @torch.no_grad()
    def embed_videos(self, data: dict) -> torch.Tensor:
        """Per-frame features of a collated batch of single videos.

        Args:
            data: ``dict(inputs=[(T, C, H, W)] * B, data_samples=[...])`` as
                collated from a per-video dataset.

        Returns:
            ``(B, T, C')`` features.
        """
        data = self.data_preprocessor(data, False)
        return self.extract_feat(data['inputs'], test_mode=True)[0]

    def cache_videos(self, videos: torch.Tensor) -> Any:
        """The head's per-video cache for the cached meta-test
        (:meth:`BaseFewShotHead.cache_videos`) of ``(num_videos, T, C')``
        features."""
        return self.cls_head.cache_videos(videos)

    def predict_episodes(self, feats: Any, data_samples: List,
                         video_index: Optional[torch.Tensor] = None) -> List:
        """Predict a batch of episodes from ``(B, V * T, C')`` features or,
        with ``video_index`` ``(B, V)``, from :meth:`cache_videos` of all
        videos (the cached meta-test,
        :mod:`amfir_mm.engine.cached_episode_loops`); the head batches
        episodes of one shape (see :meth:`BaseFewShotHead.episode_logits`).
        """
        return self.cls_head.predict(feats, data_samples,
                                     video_index=video_index)
