from .ami import FUSION_MODES, fuse_posteriors
from .asi import ActiveSampleInference, posterior_evidence

__all__ = [
    'ActiveSampleInference', 'posterior_evidence', 'fuse_posteriors',
    'FUSION_MODES'
]
