"""Optical flow: estimators, quantisation and rawframe extraction."""
from .estimators import (METHOD_ALIASES, BaseFlowEstimator, DISFlowEstimator,
                         FarnebackFlowEstimator, TVL1FlowEstimator,
                         build_flow_estimator, check_frame_pair)
from .mmflow_estimator import MMFlowEstimator, UnsupportedDeviceError
from .quantization import DEFAULT_FLOW_BOUND, dequantize_flow, quantize_flow

__all__ = [
    'BaseFlowEstimator', 'TVL1FlowEstimator', 'FarnebackFlowEstimator',
    'DISFlowEstimator', 'MMFlowEstimator', 'UnsupportedDeviceError',
    'build_flow_estimator', 'check_frame_pair', 'METHOD_ALIASES',
    'quantize_flow', 'dequantize_flow', 'DEFAULT_FLOW_BOUND'
]
