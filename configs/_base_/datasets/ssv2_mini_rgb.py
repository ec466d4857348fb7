# ../shared/data/ssv2_mini: real SSv2 frames, <root>/<class>/<video>/%08d.jpg
# (5 meta-train classes in train/, 5 novel classes in val/, 10 videos each;
# no split files: every video folder under the root).
_base_ = ['./fewshot_rgb.py']
data_root = '../shared/data/ssv2_mini'
crop, short_side = 112, 128

resize = dict(type='Resize', scale=(-1, short_side))
train_pipeline = [
    _base_.sample_frames, *_base_.rgb_decode, resize,
    dict(
        type='MultiScaleCrop',
        input_size=crop,
        scales=(1, 0.875, 0.75),
        random_crop=False,
        max_wh_scale_gap=1),
    dict(type='Resize', scale=(crop, crop), keep_ratio=False), *_base_.rgb_pack
]
test_pipeline = [
    dict(_base_.sample_frames, test_mode=True), *_base_.rgb_decode, resize,
    dict(type='CenterCrop', crop_size=crop), *_base_.rgb_pack
]


def _videos(split, pipeline):
    return dict(
        ann_file='',
        data_prefix=dict(img=f'{data_root}/{split}'),
        filename_tmpl='{:08d}.jpg',
        pipeline=pipeline)


train_dataloader = dict(dataset=dict(dataset=_videos('train', train_pipeline)))
val_dataloader = dict(dataset=dict(dataset=_videos('val', test_pipeline)))
# no test split: testing is the val/ episodes
test_dataloader = dict(
    dataset=dict(seed=2, dataset=_videos('val', test_pipeline)))
