# Episodic RGB + flow ("paired") rawframes: the base of every paired
# dataset config. Layout (tools/extract_flow.py --write-rgb):
#   <data_root>/rawframes/<class>/<video>/img_%05d.jpg, x_%05d.jpg, y_%05d.jpg
#   <data_root>/splits/{train,val,test}.txt  (lines <class>/<video>)
# The paths below are relative to the dataset's `data_root`, which a child
# sets in the three loaders (MMEngine's BaseDataset joins it to `ann_file`
# and `data_prefix`; see configs/amfir_ssv2_1shot.py): a base's values are
# computed before a child's variables exist, so an f-string here could not
# use the child's data root.
# 5-way episodes of 8 frames (TSN segment sampling), 224 crops; RGB and flow
# share frame indices and spatial augmentation (StackRGBFlow/SplitRGBFlow).
# Children change the sizes or add a step by rebuilding a pipeline from the
# parts below (`_base_.paired_load` ...; see ssv2_mini_paired.py).
_base_ = ['./fewshot_rgb.py']
crop, short_side = 224, 256
sample_frames = _base_.sample_frames
paired_decode = [dict(type='PairedRawFrameDecode'), dict(type='StackRGBFlow')]
multiscale_crop = dict(
    type='MultiScaleCrop',
    input_size=crop,
    scales=(1, 0.875, 0.75, 0.66),
    random_crop=False,
    max_wh_scale_gap=1)
train_crop = [
    dict(type='Resize', scale=(-1, short_side)), multiscale_crop,
    dict(type='Resize', scale=(crop, crop), keep_ratio=False)
]
test_crop = [
    dict(type='Resize', scale=(-1, short_side)),
    dict(type='CenterCrop', crop_size=crop)
]
paired_pack = [
    dict(type='SplitRGBFlow'),
    dict(type='PairedFormatShape', input_format='NCHW'),
    dict(type='PackActionInputs', collect_keys=('imgs', 'flow'))
]

# no Flip: SSv2 labels name directions ("left to right")
train_pipeline = [sample_frames, *paired_decode, *train_crop, *paired_pack]
# for datasets whose labels survive a horizontal flip (Kinetics, HMDB, UCF)
train_pipeline_flip = [
    sample_frames, *paired_decode, *train_crop,
    dict(type='Flip', flip_ratio=0.5), *paired_pack
]
test_pipeline = [
    dict(sample_frames, test_mode=True), *paired_decode, *test_crop,
    *paired_pack
]

video_dataset = dict(
    type='FewShotRawframeDataset',
    data_root=None,  # set by the child
    data_prefix=dict(img='rawframes'),
    filename_tmpl='img_{:05d}.jpg')


def _videos(split, pipeline):
    return dict(
        video_dataset, ann_file=f'splits/{split}.txt', pipeline=pipeline)


# the episode loaders of fewshot_rgb.py, with these videos
train_dataloader = dict(
    num_workers=4,
    dataset=dict(num_queries=1, dataset=_videos('train', train_pipeline)))
val_dataloader = dict(
    num_workers=4, dataset=dict(dataset=_videos('val', test_pipeline)))
test_dataloader = dict(
    num_workers=4,
    dataset=dict(num_episodes=10000, dataset=_videos('test', test_pipeline)))
