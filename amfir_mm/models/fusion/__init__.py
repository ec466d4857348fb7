from .ami import FUSION_MODES, fuse_posteriors
from .asi import (ActiveSampleInference, cross_modal_evidence,
                  posterior_evidence)
from .transductive import (CrossModalSoftKMeans, cross_modal_reliability,
                           refine_prototypes)

__all__ = [
    'ActiveSampleInference', 'posterior_evidence', 'cross_modal_evidence',
    'fuse_posteriors', 'FUSION_MODES', 'CrossModalSoftKMeans',
    'cross_modal_reliability', 'refine_prototypes'
]
