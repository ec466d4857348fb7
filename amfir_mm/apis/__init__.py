"""User-facing inference: recognise new actions from a few example clips
(:class:`FewShotInferencer`, in the style of ``mmaction.apis``)."""
from .fewshot_inferencer import (CheckpointError, FewShotInferencer,
                                 FrameReadError, SupportError, find_clips,
                                 inference_pipelines, read_support_dir)

__all__ = [
    'FewShotInferencer', 'FrameReadError', 'SupportError', 'CheckpointError',
    'find_clips', 'inference_pipelines', 'read_support_dir'
]
