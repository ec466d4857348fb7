# The generated moving-shapes dataset (tools/make_shapes_dataset.py), RGB:
# <data_root>/rawframes/<class>/<video>/img_%05d.jpg and
# <data_root>/splits/{train,val,test}.txt.
_base_ = ['./fewshot_rgb.py']
data_root = 'data/shapes'
crop = 56

resize = dict(type='Resize', scale=(-1, 64))
train_pipeline = [
    _base_.sample_frames, *_base_.rgb_decode, resize,
    dict(type='RandomCrop', size=crop), *_base_.rgb_pack
]
test_pipeline = [
    dict(_base_.sample_frames, test_mode=True), *_base_.rgb_decode, resize,
    dict(type='CenterCrop', crop_size=crop), *_base_.rgb_pack
]


def _videos(split, pipeline):
    return dict(
        ann_file=f'{data_root}/splits/{split}.txt',
        data_prefix=dict(img=f'{data_root}/rawframes'),
        pipeline=pipeline)


train_dataloader = dict(
    dataset=dict(num_queries=3, dataset=_videos('train', train_pipeline)))
val_dataloader = dict(
    dataset=dict(num_episodes=200, dataset=_videos('val', test_pipeline)))
test_dataloader = dict(
    dataset=dict(num_episodes=500, dataset=_videos('test', test_pipeline)))
