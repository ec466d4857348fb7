# The generated moving-shapes dataset with optical flow computed on the fly
# (OpenCV DIS) at the sampled RGB frames: no extraction step needed.
_base_ = ['./shapes_rgb.py']

_flow = [
    dict(type='FlowPairIndices'),
    dict(type='RawFrameDecode'),
    dict(
        type='ComputeFlow',
        estimator=dict(type='DISFlowEstimator', preset='medium')),
    dict(type='StackRGBFlow'),
    dict(type='Resize', scale=(-1, 64)),
]
_pack = [
    dict(type='SplitRGBFlow'),
    dict(type='PairedFormatShape', input_format='NCHW'),
    dict(type='PackActionInputs', collect_keys=('imgs', 'flow'))
]
train_pipeline = [
    dict(type='SampleFrames', clip_len=1, frame_interval=1, num_clips=8),
    *_flow,
    dict(type='RandomCrop', size=56),  # no flip: it swaps left/right
    *_pack,
]
test_pipeline = [
    dict(
        type='SampleFrames',
        clip_len=1,
        frame_interval=1,
        num_clips=8,
        test_mode=True),
    *_flow,
    dict(type='CenterCrop', crop_size=56),
    *_pack,
]
train_dataloader = dict(dataset=dict(dataset=dict(pipeline=train_pipeline)))
val_dataloader = dict(dataset=dict(dataset=dict(pipeline=test_pipeline)))
test_dataloader = dict(dataset=dict(dataset=dict(pipeline=test_pipeline)))
