# Episodic RGB rawframes: the base of the RGB-only dataset configs
# (shapes_rgb.py, ssv2_mini_rgb.py). A child sets each loader's video
# folder (`dataset.dataset`: ann_file, data_prefix, filename_tmpl) and its
# pipelines, built from the parts below as fewshot_paired.py's children
# do. 5-way episodes of 8 frames (TSN segment sampling); no Flip by
# default (SSv2 labels and the generated shapes' motions name directions).
num_frames = 8
num_ways, num_shots = 5, 1

sample_frames = dict(
    type='SampleFrames', clip_len=1, frame_interval=1, num_clips=num_frames)
rgb_decode = [dict(type='RawFrameDecode')]
rgb_pack = [
    dict(type='FormatShape', input_format='NCHW'),
    dict(type='PackActionInputs')
]


def _episodes(split, num_queries, num_episodes, seed):
    """A loader of `num_episodes` episodes of the `split` videos."""
    return dict(
        batch_size=1,
        num_workers=2,
        persistent_workers=True,
        sampler=dict(
            type='InfiniteSampler' if split == 'train' else 'DefaultSampler',
            shuffle=split == 'train'),
        dataset=dict(
            type='EpisodicDataset',
            dataset=dict(
                type='FewShotRawframeDataset', test_mode=split != 'train'),
            num_ways=num_ways,
            num_shots=num_shots,
            num_queries=num_queries,
            num_episodes=num_episodes,
            seed=seed))


train_dataloader = _episodes('train', 2, 100000, seed=1)
val_dataloader = _episodes('val', 1, 1000, seed=2)
test_dataloader = _episodes('test', 1, 1000, seed=3)
val_evaluator = dict(type='FewShotAccuracy')
test_evaluator = val_evaluator
