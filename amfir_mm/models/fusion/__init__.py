from .ami import FUSION_MODES, fuse_posteriors
from .asi import (ActiveSampleInference, cross_modal_evidence,
                  posterior_evidence)
from .evidence import (EPISODE_EVIDENCE, episode_evidence,
                       episode_evidence_channels, support_statistics)
from .transductive import (CrossModalSoftKMeans, cross_modal_reliability,
                           refine_prototypes)

__all__ = [
    'ActiveSampleInference', 'posterior_evidence', 'cross_modal_evidence',
    'fuse_posteriors', 'FUSION_MODES', 'EPISODE_EVIDENCE', 'episode_evidence',
    'episode_evidence_channels', 'support_statistics', 'CrossModalSoftKMeans',
    'cross_modal_reliability', 'refine_prototypes'
]
