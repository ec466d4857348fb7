from .ami import FUSION_MODES, fuse_posteriors, sharpen_reliability
from .asi import (SCORERS, ActiveSampleInference, cross_modal_evidence,
                  cross_modal_support, posterior_evidence)
from .evidence import (EPISODE_EVIDENCE, episode_evidence,
                       episode_evidence_channels, support_statistics)
from .transductive import (CrossModalSoftKMeans, cross_modal_reliability,
                           refine_prototypes)

__all__ = [
    'ActiveSampleInference', 'SCORERS', 'posterior_evidence',
    'cross_modal_evidence', 'cross_modal_support', 'fuse_posteriors',
    'FUSION_MODES', 'EPISODE_EVIDENCE', 'episode_evidence',
    'episode_evidence_channels', 'support_statistics', 'CrossModalSoftKMeans',
    'cross_modal_reliability', 'refine_prototypes', 'sharpen_reliability'
]
