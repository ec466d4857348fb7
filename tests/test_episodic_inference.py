"""The episode helpers of ``amfir_mm.models.utils.episodes`` and the
:class:`EpisodicInferenceMixin` interface."""
import pytest
import torch
from mmaction.structures import ActionDataSample

from amfir_mm.models.recognizers import (AMFIRRecognizer,
                                         EpisodicInferenceMixin,
                                         FewShotRecognizer)
from amfir_mm.models.utils.episodes import (map_episode_batches, pooled_videos,
                                            unbatch)


def episode_sample(ways, shots, queries):
    return ActionDataSample(
        metainfo=dict(num_ways=ways, num_shots=shots, num_queries=queries))


class Recorder:
    """A ``run_batch`` that records its calls and returns one string per
    episode of the batch it was given."""

    def __init__(self):
        self.calls = []

    def __call__(self, feats, meta, video_index):
        self.calls.append((feats, dict(meta), video_index))
        first = next(iter(feats.values())) if isinstance(feats,
                                                         dict) else feats
        episodes = len(first) if video_index is None else len(video_index)
        return [f'call{len(self.calls)}-episode{e}' for e in range(episodes)]


def test_one_shape_runs_once_on_the_whole_batch():
    feats = torch.arange(3 * 4.).reshape(3, 4, 1)
    run = Recorder()
    out = map_episode_batches(run, feats, [episode_sample(2, 1, 1)] * 3)
    assert out == ['call1-episode0', 'call1-episode1', 'call1-episode2']
    (given, meta, index), = run.calls
    assert given is feats and index is None
    assert meta == dict(num_ways=2, num_shots=1, num_queries=1)


def test_mixed_shapes_run_one_by_one_on_each_episode():
    feats = dict(
        rgb=torch.arange(3 * 4.).reshape(3, 4, 1),
        flow=-torch.arange(3 * 4.).reshape(3, 4, 1))
    samples = [
        episode_sample(2, 1, 1),
        episode_sample(1, 2, 2),
        episode_sample(2, 1, 1)
    ]
    run = Recorder()
    out = map_episode_batches(run, feats, samples)
    # each call's first (only) episode, in order
    assert out == ['call1-episode0', 'call2-episode0', 'call3-episode0']
    for e, (given, meta, index) in enumerate(run.calls):
        assert index is None
        assert meta['num_shots'] == samples[e].num_shots
        for m in feats:
            assert given[m].shape == (1, 4, 1)
            assert torch.equal(given[m][0], feats[m][e])


def test_mixed_shapes_with_video_index_share_the_cache():
    cache = torch.randn(10, 3)
    index = [torch.tensor([0, 1, 2, 3]), torch.tensor([4, 5, 6, 7, 8, 9])]
    samples = [episode_sample(2, 1, 1), episode_sample(2, 1, 2)]
    run = Recorder()
    map_episode_batches(run, cache, samples, index)
    assert len(run.calls) == 2
    for e, (given, meta, episode_index) in enumerate(run.calls):
        assert given is cache
        assert episode_index.tolist() == [index[e].tolist()]
        assert meta['num_queries'] == e + 1


def test_pooled_videos_equal_hand_computation():
    ways, shots, queries, frames = 2, 2, 1, 3
    videos = ways * (shots + queries)  # 6
    feats = torch.randn(2, videos * frames, 4)
    meta = dict(num_ways=ways, num_shots=shots, num_queries=queries)
    support = pooled_videos(feats, meta, 'support')
    query = pooled_videos(feats, meta, 'query')
    for e in range(2):
        for v in range(videos):
            mean = sum(feats[e, v * frames + t]
                       for t in range(frames)) / frames
            got = support[e, v] if v < ways * shots else \
                query[e, v - ways * shots]
            torch.testing.assert_close(got, mean)
    # from per-video means and indices: the indexed rows, split likewise
    means = torch.randn(9, 4)
    index = torch.tensor([[8, 7, 6, 5, 4, 3], [0, 1, 2, 0, 1, 2]])
    assert torch.equal(
        pooled_videos(means, meta, 'query', index)[0], means[[4, 3]])
    assert torch.equal(
        pooled_videos(means, meta, 'support', index)[1], means[[0, 1, 2, 0]])
    with pytest.raises(ValueError, match='part'):
        pooled_videos(feats, meta, 'queries')


def test_unbatch_views_or_clones():
    batch = dict(a=torch.arange(6.).reshape(3, 2), b=torch.arange(3))
    views, clones = unbatch(batch), unbatch(batch, clone=True)
    assert [ep['b'].item() for ep in clones] == [0, 1, 2]
    assert torch.equal(clones[1]['a'], torch.tensor([2., 3.]))
    for ep in views:
        assert ep['a'].untyped_storage().data_ptr() == \
            batch['a'].untyped_storage().data_ptr()
    for ep in clones:
        assert ep['a'].untyped_storage().nbytes() == 2 * 4


def test_mixin_is_the_interface_of_both_recognisers():
    for recognizer in (FewShotRecognizer, AMFIRRecognizer):
        assert issubclass(recognizer, EpisodicInferenceMixin)
        assert recognizer.embed_videos is EpisodicInferenceMixin.embed_videos

    class Incomplete(EpisodicInferenceMixin):

        def cache_videos(self, feats):
            return feats

    with pytest.raises(TypeError, match='predict_episodes'):
        Incomplete()


@pytest.mark.parametrize('as_tuple', [True, False])
def test_embed_videos_preprocesses_and_runs_extract_feat(as_tuple):
    """The features of ``extract_feat(inputs, test_mode=True)`` on the
    preprocessed batch: MMAction2's ``(feats, kwargs)`` tuple or a dict."""

    class Toy(EpisodicInferenceMixin):

        def data_preprocessor(self, data, training):
            assert training is False
            return dict(inputs=torch.stack(data['inputs']) * 2)

        def extract_feat(self, inputs, test_mode=False):
            assert test_mode
            feats = inputs + 1
            return (feats, {}) if as_tuple else dict(rgb=feats)

        def cache_videos(self, feats):
            return feats

        def predict_episodes(self, feats, data_samples, video_index=None):
            return data_samples

    videos = [torch.full((2, 3), 1.), torch.full((2, 3), 5.)]
    out = Toy().embed_videos(dict(inputs=videos, data_samples=[None] * 2))
    expected = torch.stack([torch.full((2, 3), 3.), torch.full((2, 3), 11.)])
    torch.testing.assert_close(out if as_tuple else out['rgb'], expected)


def test_episode_helpers_stay_importable_where_they_were():
    from amfir_mm import models
    from amfir_mm.models import heads
    from amfir_mm.models.heads import base_fewshot_head
    from amfir_mm.models.utils import episodes
    for name in ('split_episode', 'split_episode_index', 'gather_videos',
                 'episode_shape'):
        helper = getattr(episodes, name)
        assert getattr(models, name) is helper
        assert getattr(heads, name) is helper
        assert getattr(base_fewshot_head, name) is helper
