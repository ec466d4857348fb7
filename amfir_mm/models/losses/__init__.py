from .amd_loss import AMDLoss
from .asi_loss import ASILoss, free_energy, smoothed_preference

__all__ = ['AMDLoss', 'ASILoss', 'free_energy', 'smoothed_preference']
