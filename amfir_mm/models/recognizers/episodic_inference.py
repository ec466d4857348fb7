"""The interface of recognisers that the cached meta-test and the inferencer
run episodes through."""
from abc import ABCMeta, abstractmethod
from typing import Any, List, Optional, Sequence, Union

import torch


class EpisodicInferenceMixin(metaclass=ABCMeta):
    """Episodic inference from per-video features computed once.

    With a deterministic test pipeline a video's per-frame features are the
    same in every episode, so the cached meta-test
    (:mod:`amfir_mm.engine.cached_episode_loops`) and
    :class:`FewShotInferencer` embed each video once and run every episode
    from a per-video cache, by video index:

    1. :meth:`embed_videos`: per-frame features ``(B, T, C)`` of a collated
       batch of ``B`` single videos (a dict of them, one per modality, for a
       multimodal recogniser);
    2. :meth:`cache_videos`: the per-video work on the features of all
       videos ``(num_videos, T, C)``, done once (e.g. OTAM's frame distances
       of every pair of videos);
    3. :meth:`predict_episodes`: predictions of ``E`` episodes, from ``(E,
       V * T, C)`` features or from the cache and the episodes' ``(E, V)``
       video indices, support first.

    Episodes of one shape (``N``, ``K``, ``Q``) run as one batch, others
    one by one (:func:`amfir_mm.models.utils.map_episode_batches`).  Mixed
    into an MMEngine model
    whose ``data_preprocessor`` and ``extract_feat(inputs, test_mode=True)``
    are MMAction2's.
    """

    @torch.no_grad()
    def embed_videos(self, data: dict) -> Any:
        """Per-frame features of a collated batch of single videos.

        Args:
            data: ``dict(inputs=..., data_samples=[...])`` of ``B`` videos
                of ``T`` frames as collated from a per-video dataset.

        Returns:
            ``(B, T, C)`` features, or a dict of them (one per modality):
            :meth:`extract_feat` in test mode of the preprocessed inputs
            (the features of its ``(features, kwargs)`` tuple, as
            MMAction2's recognisers return).
        """
        data = self.data_preprocessor(data, False)
        feats = self.extract_feat(data['inputs'], test_mode=True)
        return feats[0] if isinstance(feats, tuple) else feats

    @abstractmethod
    def cache_videos(self, feats: Any) -> Any:
        """The per-video cache of :meth:`embed_videos` features of all
        videos, ``(num_videos, T, C)`` (or a dict of them), that
        :meth:`predict_episodes` reads with a ``video_index``."""

    @abstractmethod
    def predict_episodes(
        self,
        feats: Any,
        data_samples: List,
        video_index: Optional[Union[torch.Tensor,
                                    Sequence[torch.Tensor]]] = None
    ) -> List:
        """Predictions of ``E`` episodes.

        Args:
            feats: ``(E, V * T, C)`` per-frame features (or a dict of
                them), or, with ``video_index``, :meth:`cache_videos` of all
                videos.
            data_samples: the ``E`` episodes' samples.
            video_index: ``(E, V)`` the episodes' video indices into the
                cache, support first (for episodes of several shapes, ``E``
                tensors ``(V_e, )``).

        Returns:
            list: ``data_samples``, with the prediction fields set.
        """
