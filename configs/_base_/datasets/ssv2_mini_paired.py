# ../shared/data/ssv2_mini with flow, for CPU runs at 112 px:
#   python tools/extract_flow.py ../shared/data/ssv2_mini \
#       data/ssv2_mini_paired --method dis --write-rgb --short-side 128
# gives <data_root>/{train,val}/<class>/<video>/{img,x,y}_%05d.jpg
# (5 meta-train and 5 novel classes, 10 videos of 8 frames each; no split
# files: every video folder under train/ or val/).
_base_ = ['./fewshot_paired.py']
data_root = 'data/ssv2_mini_paired'
crop, short_side = 112, 128

train_crop = [
    dict(type='Resize', scale=(-1, short_side)),
    dict(_base_.multiscale_crop, input_size=crop, scales=(1, 0.875, 0.75)),
    dict(type='Resize', scale=(crop, crop), keep_ratio=False)
]
test_crop = [
    dict(type='Resize', scale=(-1, short_side)),
    dict(type='CenterCrop', crop_size=crop)
]
train_load = [_base_.sample_frames, *_base_.paired_decode]
test_load = [dict(_base_.sample_frames, test_mode=True), *_base_.paired_decode]
train_pipeline = [*train_load, *train_crop, *_base_.paired_pack]
test_pipeline = [*test_load, *test_crop, *_base_.paired_pack]
# Flow as an (x, y, magnitude) image, for a flow branch with an unmodified
# 3-channel ImageNet stem (configs/ssv2mini/).
split_rgb_flow, *format_pack = _base_.paired_pack
flow_image_pack = [
    split_rgb_flow,
    dict(type='FlowMagnitudeImage'), *format_pack
]
train_pipeline_flow_image = [*train_load, *train_crop, *flow_image_pack]
test_pipeline_flow_image = [*test_load, *test_crop, *flow_image_pack]

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
