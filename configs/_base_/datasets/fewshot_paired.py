# Episodic RGB + flow data shared by the standard benchmarks; the
# <dataset>_paired.py files set the split files and data roots.
# Layout (tools/extract_flow.py --write-rgb):
#   <data_root>/rawframes/<class>/<video>/img_%05d.jpg, x_%05d.jpg, y_%05d.jpg
#   <data_root>/splits/{train,val,test}.txt  (lines <class>/<video>)
# 5-way episodes of 8 frames (TSN segment sampling), 224 crops; RGB and flow
# share frame indices and spatial augmentation (StackRGBFlow/SplitRGBFlow).
num_frames, crop, short_side = 8, 224, 256
num_ways, num_shots = 5, 1

sample_frames = dict(
    type='SampleFrames', clip_len=1, frame_interval=1, num_clips=num_frames)
train_pipeline = [
    sample_frames,
    dict(type='PairedRawFrameDecode'),
    dict(type='StackRGBFlow'),
    dict(type='Resize', scale=(-1, short_side)),
    dict(
        type='MultiScaleCrop',
        input_size=crop,
        scales=(1, 0.875, 0.75, 0.66),
        random_crop=False,
        max_wh_scale_gap=1),
    dict(type='Resize', scale=(crop, crop), keep_ratio=False),
    # no Flip here: SSv2 labels name directions; see train_pipeline_flip
    dict(type='SplitRGBFlow'),
    dict(type='PairedFormatShape', input_format='NCHW'),
    dict(type='PackActionInputs', collect_keys=('imgs', 'flow'))
]
# for datasets whose labels survive a horizontal flip (Kinetics, HMDB, UCF)
train_pipeline_flip = train_pipeline[:6] + [dict(type='Flip', flip_ratio=0.5)
                                            ] + train_pipeline[6:]
test_pipeline = [
    dict(sample_frames, test_mode=True),
    dict(type='PairedRawFrameDecode'),
    dict(type='StackRGBFlow'),
    dict(type='Resize', scale=(-1, short_side)),
    dict(type='CenterCrop', crop_size=crop),
    dict(type='SplitRGBFlow'),
    dict(type='PairedFormatShape', input_format='NCHW'),
    dict(type='PackActionInputs', collect_keys=('imgs', 'flow'))
]

video_dataset = dict(
    type='FewShotRawframeDataset',
    ann_file='',  # set by each benchmark: <data_root>/splits/<split>.txt
    data_prefix=dict(img=''),  # <data_root>/rawframes
    filename_tmpl='img_{:05d}.jpg')

train_dataloader = dict(
    batch_size=1,
    num_workers=4,
    persistent_workers=True,
    sampler=dict(type='InfiniteSampler', shuffle=True),
    dataset=dict(
        type='EpisodicDataset',
        dataset=dict(video_dataset, pipeline=train_pipeline),
        num_ways=num_ways,
        num_shots=num_shots,
        num_queries=1,
        num_episodes=100000,
        seed=1))
val_dataloader = dict(
    batch_size=1,
    num_workers=4,
    persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(
        type='EpisodicDataset',
        dataset=dict(video_dataset, pipeline=test_pipeline, test_mode=True),
        num_ways=num_ways,
        num_shots=num_shots,
        num_queries=1,
        num_episodes=1000,
        seed=2))
test_dataloader = dict(
    batch_size=1,
    num_workers=4,
    persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(
        type='EpisodicDataset',
        dataset=dict(video_dataset, pipeline=test_pipeline, test_mode=True),
        num_ways=num_ways,
        num_shots=num_shots,
        num_queries=1,
        num_episodes=10000,
        seed=3))
val_evaluator = dict(type='FewShotAccuracy')
test_evaluator = val_evaluator
