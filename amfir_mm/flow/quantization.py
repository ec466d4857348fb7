"""Flow <-> 8-bit image conversion in MMAction2's rawframe convention.

MMAction2's flow rawframes (``x_%05d.jpg`` / ``y_%05d.jpg``, as written by
``denseflow`` and ``tools/data/build_rawframes.py``) store each flow
component as a grey JPEG, linearly mapped from ``[-bound, bound]`` pixels to
``0..255`` with rounding::

    value = round((clip(f, -bound, bound) + bound) * 255 / (2 * bound))

and the inverse ``f = value * 2 * bound / 255 - bound``. A flow of 0 px maps
to 127.5, stored as 128 (``np.rint`` rounds half to even, like OpenCV's
``cvRound`` used by denseflow).

``mmcv.video.quantize_flow`` / ``dequantize_flow`` are not used on purpose:
they use 255 bins with ``floor`` (values 0..254, zero stored as 127) and
normalise by the image size by default, which is not the layout MMAction2's
flow datasets and pretrained two-stream models expect.
"""
from typing import Tuple

import numpy as np

#: Default clipping bound in pixels (MMAction2 / denseflow default).
DEFAULT_FLOW_BOUND = 20.0


def _check_bound(bound: float) -> float:
    bound = float(bound)
    if not bound > 0:
        raise ValueError(f'flow bound must be > 0 pixels, got {bound}')
    return bound


def quantize_flow(flow: np.ndarray,
                  bound: float = DEFAULT_FLOW_BOUND
                  ) -> Tuple[np.ndarray, np.ndarray]:
    """Quantise a flow field to two uint8 images.

    Args:
        flow (np.ndarray): ``(H, W, 2)`` flow in pixels, x then y.
        bound (float): Values are clipped to ``[-bound, bound]`` pixels.

    Returns:
        tuple[np.ndarray, np.ndarray]: ``(H, W)`` uint8 x and y images.
    """
    bound = _check_bound(bound)
    flow = np.asarray(flow)
    if flow.ndim != 3 or flow.shape[-1] != 2:
        raise ValueError(f'flow must have shape (H, W, 2), got {flow.shape}')
    scaled = (np.clip(flow, -bound, bound) + bound) * (255.0 / (2 * bound))
    quantized = np.rint(scaled).astype(np.uint8)
    return quantized[..., 0], quantized[..., 1]


def dequantize_flow(flow_x: np.ndarray,
                    flow_y: np.ndarray,
                    bound: float = DEFAULT_FLOW_BOUND) -> np.ndarray:
    """Recover a flow field from its two quantised images.

    Args:
        flow_x (np.ndarray): ``(H, W)`` x image, values 0..255.
        flow_y (np.ndarray): ``(H, W)`` y image, values 0..255.
        bound (float): The bound used by :func:`quantize_flow`, in pixels.

    Returns:
        np.ndarray: ``(H, W, 2)`` float32 flow in pixels. The error against
        the unclipped input is at most ``bound / 255`` pixels.
    """
    bound = _check_bound(bound)
    if flow_x.shape != flow_y.shape or flow_x.ndim != 2:
        raise ValueError('flow_x and flow_y must be (H, W) arrays of the same '
                         f'shape, got {flow_x.shape} and {flow_y.shape}')
    quantized = np.stack([flow_x, flow_y], axis=-1).astype(np.float32)
    return quantized * np.float32(2 * bound / 255.0) - np.float32(bound)
