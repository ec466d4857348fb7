"""Episodic N-way K-shot sampling: shapes, reproducibility, errors, ranks."""
import shutil

import numpy as np
import pytest
import torch
from mmengine.dataset import DefaultSampler, InfiniteSampler

from amfir_mm.datasets import EpisodeError, EpisodicDataset

PIPELINE = [
    dict(type='SampleFrames', clip_len=1, num_clips=3, test_mode=True),
    dict(type='RawFrameDecode'),
    dict(type='FormatShape', input_format='NCHW'),
    dict(type='PackActionInputs')
]


def video_dataset(tree, **kwargs):
    return dict(
        type='FewShotRawframeDataset',
        ann_file=tree['split'],
        data_prefix=dict(img=tree['root']),
        pipeline=PIPELINE,
        **kwargs)


def episodes(tree, **kwargs):
    cfg = dict(num_ways=3, num_shots=2, num_queries=1, num_episodes=20, seed=7)
    cfg.update(kwargs)
    return EpisodicDataset(video_dataset(tree), **cfg)


def test_episode_layout_and_labels(frame_tree):
    ds = episodes(frame_tree)
    item = ds[0]
    # V = 3 ways * (2 shots + 1 query) videos of 3 frames, 16x16 px
    assert item['inputs'].shape == (9 * 3, 3, 16, 16)
    sample = item['data_samples']
    assert sample.gt_label.tolist() == [0, 1, 2]
    ep = ds.draw_episode(0)
    # each class's frames are filled with grey level 20 * label + t: the
    # support block of class i holds that class's videos
    for way, label in enumerate(sample.metainfo['class_labels']):
        block = item['inputs'][way * 2 * 3:(way + 1) * 2 * 3]
        first_frame_level = block[0, 0, 0, 0].item()
        assert abs(first_frame_level - (20 * label + 1)) <= 3
        assert len(set(ep['support'][way] + ep['query'][way])) == 3
    videos = [v for vs in ep['support'] + ep['query'] for v in vs]
    assert len(set(videos)) == len(videos)


def test_episode_sample_without_videos(frame_tree):
    ds = episodes(frame_tree)
    order, sample = ds.episode_sample(3)
    ep = ds.draw_episode(3)
    assert order == [v for vs in ep['support'] + ep['query'] for v in vs]
    infos = [ds.dataset.get_data_info(v) for v in order]
    assert sample.metainfo == dict(
        num_ways=3,
        num_shots=2,
        num_queries=1,
        episode_index=3,
        class_labels=ep['classes'],
        video_ids=[i.get('video_id') or i['frame_dir'] for i in infos])
    assert sample.gt_label.tolist() == [0, 1, 2]
    _, again = ds.episode_sample(3)  # equal, but objects of its own
    assert again.video_ids == sample.video_ids
    assert again.video_ids is not sample.video_ids


def test_reproducible_from_seed(frame_tree):
    a, b = episodes(frame_tree), episodes(frame_tree)
    c = episodes(frame_tree, seed=8)
    assert [a.draw_episode(i) for i in range(20)] == \
        [b.draw_episode(i) for i in range(20)]
    assert [a.draw_episode(i) for i in range(20)] != \
        [c.draw_episode(i) for i in range(20)]


def test_episodes_file_round_trip(frame_tree, tmp_path):
    ds = episodes(frame_tree)
    path = str(tmp_path / 'episodes.json')
    ds.save_episodes(path)
    loaded = episodes(frame_tree, seed=99, episodes_file=path)
    assert len(loaded) == 20
    assert [loaded.draw_episode(i) for i in range(20)] == \
        [ds.draw_episode(i) for i in range(20)]
    with pytest.raises(EpisodeError, match='configured for 3-way 1-shot'):
        episodes(frame_tree, num_shots=1, episodes_file=path)


def test_class_with_too_few_videos_is_an_error(frame_tree):
    with pytest.raises(
            EpisodeError,
            match=r'6 classes in .*train\.txt '
            r'have fewer than num_shots \+ num_queries = 5'):
        episodes(frame_tree, num_shots=4)


def test_drop_small_classes_flag(frame_tree):
    lines = frame_tree['lines']
    # class5 keeps 2 of its 4 videos
    open(frame_tree['split'], 'w').write('\n'.join(lines[:-2]) + '\n')
    with pytest.raises(EpisodeError, match=r'class5 \(2 videos\)'):
        episodes(frame_tree, num_shots=2, num_queries=1)
    ds = episodes(frame_tree, drop_small_classes=True)
    used = {c for i in range(20) for c in ds.draw_episode(i)['classes']}
    assert 5 not in used and len(used) == 5


def test_too_few_classes_for_the_ways(frame_tree):
    with pytest.raises(EpisodeError, match='7-way episodes need 7 classes'):
        episodes(frame_tree, num_ways=7)


def test_missing_frame_folder_names_split_line(frame_tree):
    shutil.rmtree(f"{frame_tree['root']}/class2/v1")
    with pytest.raises(
            FileNotFoundError,
            match=r'frame folder missing: .*class2/v1 '
            r'\(listed at .*train\.txt:10\)'):
        episodes(frame_tree)


def test_skip_invalid_counts_dropped_videos(frame_tree):
    shutil.rmtree(f"{frame_tree['root']}/class2/v1")
    ds = EpisodicDataset(
        video_dataset(frame_tree, skip_invalid=True),
        num_ways=3,
        num_shots=2,
        num_queries=1)
    assert ds.dataset.num_skipped == 1
    assert len(ds.dataset) == 23


def test_unreadable_frame_names_the_video(frame_tree):
    ds = episodes(frame_tree)
    ep = ds.draw_episode(0)
    bad = ds.dataset.get_data_info(ep['support'][0][0])['frame_dir']
    for t in range(1, 5):
        open(f'{bad}/img_{t:05d}.jpg', 'wb').write(b'not a jpeg')
    with pytest.raises(
            RuntimeError, match=r'failed to load video .*'
            r'train\.txt:\d+'):
        ds[0]


@pytest.mark.parametrize('sampler_cls', [DefaultSampler, InfiniteSampler])
def test_ranks_get_disjoint_episodes(frame_tree, monkeypatch, sampler_cls):
    ds = episodes(frame_tree, num_episodes=10)
    per_rank = []
    for rank in (0, 1):
        monkeypatch.setattr(
            'mmengine.dataset.sampler.get_dist_info', lambda r=rank: (r, 2))
        sampler = sampler_cls(ds, shuffle=True, seed=3)
        it = iter(sampler)
        per_rank.append([next(it) for _ in range(5)])
    assert not set(per_rank[0]) & set(per_rank[1])
    assert sorted(per_rank[0] + per_rank[1]) == list(range(10))
    # different episode indices are different episodes
    drawn = [str(ds.draw_episode(i)) for i in range(10)]
    assert len(set(drawn)) == 10


def test_collate_and_preprocess_batch_of_episodes(frame_tree):
    from mmaction.registry import MODELS
    from mmengine.dataset import pseudo_collate
    ds = episodes(frame_tree)
    batch = pseudo_collate([ds[0], ds[1]])
    pre = MODELS.build(
        dict(
            type='ActionDataPreprocessor',
            mean=[0, 0, 0],
            std=[255, 255, 255],
            format_shape='NCHW'))
    out = pre(batch)
    assert out['inputs'].shape == (2, 27, 3, 16, 16)
    assert torch.all(out['inputs'] <= 1) and len(out['data_samples']) == 2
    assert np.isclose(out['inputs'].max().item(),
                      batch['inputs'][0].max().item() / 255, atol=1e-3) or \
        np.isclose(out['inputs'].max().item(),
                   batch['inputs'][1].max().item() / 255, atol=1e-3)
