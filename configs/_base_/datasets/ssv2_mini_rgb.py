# ../shared/data/ssv2_mini: real SSv2 frames, <root>/<class>/<video>/%08d.jpg
# (5 meta-train classes in train/, 5 novel classes in val/, 10 videos each).
data_root = '../shared/data/ssv2_mini'
num_frames, crop, short_side = 8, 112, 128
num_ways, num_shots = 5, 1

train_pipeline = [
    dict(
        type='SampleFrames',
        clip_len=1,
        frame_interval=1,
        num_clips=num_frames),
    dict(type='RawFrameDecode'),
    dict(type='Resize', scale=(-1, short_side)),
    dict(
        type='MultiScaleCrop',
        input_size=crop,
        scales=(1, 0.875, 0.75),
        random_crop=False,
        max_wh_scale_gap=1),
    dict(type='Resize', scale=(crop, crop), keep_ratio=False),
    # no Flip: SSv2 labels name directions ("left to right")
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
    dict(type='Resize', scale=(-1, short_side)),
    dict(type='CenterCrop', crop_size=crop),
    dict(type='FormatShape', input_format='NCHW'),
    dict(type='PackActionInputs')
]


def _split(name, pipeline, test_mode):
    return dict(
        type='FewShotRawframeDataset',
        ann_file='',  # every <class>/<video>/ folder under the root
        data_prefix=dict(img=f'{data_root}/{name}'),
        filename_tmpl='{:08d}.jpg',
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
        num_queries=2,
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
        num_episodes=1000,
        seed=2))
test_dataloader = val_dataloader
val_evaluator = dict(type='FewShotAccuracy')
test_evaluator = val_evaluator
