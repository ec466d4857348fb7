from .amd_loss import AMDLoss
from .asi_loss import (ASILoss, disagreement_mask, free_energy,
                       smoothed_preference)

__all__ = [
    'AMDLoss', 'ASILoss', 'disagreement_mask', 'free_energy',
    'smoothed_preference'
]
