# ../shared/data/ssv2_mini with DIS flow, for CPU smoke runs:
#   python tools/extract_flow.py ../shared/data/ssv2_mini \
#       data/ssv2_mini_paired --method dis --write-rgb --short-side 128
# gives <data_root>/{train,val}/<class>/<video>/{img,x,y}_%05d.jpg
# (5 meta-train and 5 novel classes, 10 videos of 8 frames each).
_base_ = ['./fewshot_paired.py']
data_root = 'data/ssv2_mini_paired'
num_frames, crop, short_side = 8, 112, 128

train_pipeline = [
    dict(
        type='SampleFrames',
        clip_len=1,
        frame_interval=1,
        num_clips=num_frames),
    dict(type='PairedRawFrameDecode'),
    dict(type='StackRGBFlow'),
    dict(type='Resize', scale=(-1, short_side)),
    dict(
        type='MultiScaleCrop',
        input_size=crop,
        scales=(1, 0.875, 0.75),
        random_crop=False,
        max_wh_scale_gap=1),
    dict(type='Resize', scale=(crop, crop), keep_ratio=False),
    dict(type='SplitRGBFlow'),
    dict(type='PairedFormatShape', input_format='NCHW'),
    dict(type='PackActionInputs', collect_keys=('imgs', 'flow'))
]
test_pipeline = [
    dict(
        type='SampleFrames',
        clip_len=1,
        frame_interval=1,
        num_clips=num_frames,
        test_mode=True),
    dict(type='PairedRawFrameDecode'),
    dict(type='StackRGBFlow'),
    dict(type='Resize', scale=(-1, short_side)),
    dict(type='CenterCrop', crop_size=crop),
    dict(type='SplitRGBFlow'),
    dict(type='PairedFormatShape', input_format='NCHW'),
    dict(type='PackActionInputs', collect_keys=('imgs', 'flow'))
]
train_dataloader = dict(
    num_workers=2,
    dataset=dict(
        num_queries=2,
        dataset=dict(
            ann_file='',
            data_prefix=dict(img=f'{data_root}/train'),
            pipeline=train_pipeline)))
val_dataloader = dict(
    num_workers=2,
    dataset=dict(
        num_episodes=100,
        dataset=dict(
            ann_file='',
            data_prefix=dict(img=f'{data_root}/val'),
            pipeline=test_pipeline)))
test_dataloader = val_dataloader
