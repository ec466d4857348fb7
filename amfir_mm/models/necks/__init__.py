from .temporal_adapter import TemporalAdapter

__all__ = ['TemporalAdapter']
