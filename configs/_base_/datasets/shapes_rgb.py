# The generated moving-shapes dataset (tools/make_shapes_dataset.py), RGB.
data_root = 'data/shapes'
num_frames, crop = 8, 56
num_ways, num_shots = 5, 1

train_pipeline = [
    dict(
        type='SampleFrames',
        clip_len=1,
        frame_interval=1,
        num_clips=num_frames),
    dict(type='RawFrameDecode'),
    dict(type='Resize', scale=(-1, 64)),
    dict(type='RandomCrop', size=crop),  # no flip: it swaps left/right
    dict(type='FormatShape', input_format='NCHW'),
    dict(type='PackActionInputs')
]
test_pipeline = [
    dict(
        type='SampleFrames',
        clip_len=1,
        frame_interval=1,
        num_clips=num_frames,
        test_mode=True),
    dict(type='RawFrameDecode'),
    dict(type='Resize', scale=(-1, 64)),
    dict(type='CenterCrop', crop_size=crop),
    dict(type='FormatShape', input_format='NCHW'),
    dict(type='PackActionInputs')
]


def _split(name, pipeline, test_mode):
    return dict(
        type='FewShotRawframeDataset',
        ann_file=f'{data_root}/splits/{name}.txt',
        data_prefix=dict(img=f'{data_root}/rawframes'),
        pipeline=pipeline,
        test_mode=test_mode)


train_dataloader = dict(
    batch_size=1,
    num_workers=2,
    persistent_workers=True,
    sampler=dict(type='InfiniteSampler', shuffle=True),
    dataset=dict(
        type='EpisodicDataset',
        dataset=_split('train', train_pipeline, False),
        num_ways=num_ways,
        num_shots=num_shots,
        num_queries=3,
        num_episodes=100000,
        seed=1))
val_dataloader = dict(
    batch_size=1,
    num_workers=2,
    persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(
        type='EpisodicDataset',
        dataset=_split('val', test_pipeline, True),
        num_ways=num_ways,
        num_shots=num_shots,
        num_queries=1,
        num_episodes=200,
        seed=2))
test_dataloader = dict(
    batch_size=1,
    num_workers=2,
    persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(
        type='EpisodicDataset',
        dataset=_split('test', test_pipeline, True),
        num_ways=num_ways,
        num_shots=num_shots,
        num_queries=1,
        num_episodes=500,
        seed=3))
val_evaluator = dict(type='FewShotAccuracy')
test_evaluator = val_evaluator
