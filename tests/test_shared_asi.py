"""ASI's ``'shared'`` scorer: one scorer reads each modality's own evidence;
against numpy hand computations and the symmetry it promises."""
import math

import numpy as np
import pytest
import torch

import amfir_mm  # noqa: F401
from amfir_mm.models.fusion import ActiveSampleInference, cross_modal_support
from conftest import feature_episode, tiny_amfir


def test_cross_modal_support_by_hand():
    probs = np.array([[[0.7, 0.2, 0.1], [0.1, 0.3, 0.6], [0.2, 0.5, 0.3]]])
    out = cross_modal_support(torch.tensor(probs).log())[0, :, 0].numpy()
    # tops: 0, 2, 1; support of s = mean over the others a of p_a(top_s)
    expected = [(0.1 + 0.2) / 2, (0.1 + 0.3) / 2, (0.2 + 0.3) / 2]
    np.testing.assert_allclose(out, expected, rtol=1e-6)
    one = cross_modal_support(torch.tensor(probs[:, :1]).log())
    assert one.shape == (1, 1, 1) and float(one) == 0


def np_statistics(p, topk):
    """Posterior statistics of one posterior ``(N,)``: top-k, entropy /
    log N, top-1 minus top-2."""
    top = np.sort(p)[::-1]
    entropy = -(p * np.log(p)).sum() / math.log(len(p))
    return np.concatenate([top[:topk], [entropy, top[0] - top[1]]])


def test_shared_linear_scorer_by_hand():
    rng = np.random.default_rng(0)
    probs = rng.dirichlet(np.ones(4), size=(5, 2))  # (M, S, N)
    episode = rng.normal(size=(5, 4))  # 2 groups x 2 modalities
    asi = ActiveSampleInference(
        topk=2,
        hidden_channels=0,
        cross_modal=True,
        episode_evidence=('distance_margin', 'episode_rank'),
        scorer='shared').double()
    assert asi.mlp[0].in_features == 2 + 2 + 1 + 2
    weight = rng.normal(size=7)
    with torch.no_grad():
        asi.mlp[0].weight.copy_(torch.tensor(weight)[None])
        asi.mlp[0].bias.fill_(0.3)
    out = asi(torch.tensor(probs).log(), episode=torch.tensor(episode))
    top = probs.argmax(-1)
    expected = np.zeros((5, 2))
    for q in range(5):
        for s in range(2):
            other = 1 - s
            evidence = np.concatenate([
                np_statistics(probs[q, s], 2), [probs[q, other, top[q, s]]],
                [episode[q, s], episode[q, 2 + s]]
            ])
            expected[q, s] = evidence @ weight + 0.3
    expected -= np.log(np.exp(expected).sum(-1, keepdims=True))
    np.testing.assert_allclose(out.detach().numpy(), expected, rtol=1e-9)


def test_shared_scorer_treats_modalities_alike():
    torch.manual_seed(0)
    asi = ActiveSampleInference(
        topk=3,
        hidden_channels=8,
        cross_modal=True,
        episode_evidence=('distance_margin', ),
        scorer='shared')
    torch.nn.init.normal_(asi.mlp[-1].weight)
    log_probs = torch.randn(6, 2, 5).log_softmax(-1)
    episode = torch.randn(6, 2)
    log_pi = asi(log_probs, episode=episode)
    assert not torch.allclose(log_pi, torch.full_like(log_pi, -math.log(2)))
    swapped = asi(log_probs.flip(1), episode=episode.flip(1))
    torch.testing.assert_close(swapped, log_pi.flip(1))
    same = asi(
        log_probs[:, :1].expand(-1, 2, -1),
        episode=episode[:, :1].repeat(1, 2))
    torch.testing.assert_close(same.exp(), torch.full_like(same, 0.5))


def test_shared_linear_scorer_ignores_a_common_shift():
    """A shift that moves every modality's evidence alike (here: the
    episode evidence, with a standardisation whose running mean differs)
    leaves ``pi`` as it was."""
    torch.manual_seed(0)
    asi = ActiveSampleInference(
        hidden_channels=0,
        episode_evidence=('distance_margin', 'episode_rank'),
        normalize_evidence=True,
        scorer='shared')
    torch.nn.init.normal_(asi.mlp[-1].weight)
    asi.train()
    log_probs = torch.randn(16, 2, 5).log_softmax(-1)
    episode = torch.randn(16, 4)
    asi(log_probs, episode=episode)  # running statistics move
    asi.eval()
    first = asi(log_probs, episode=episode)
    shifted = asi(log_probs, episode=episode + torch.tensor([3., 3, -2, -2]))
    torch.testing.assert_close(shifted, first)


def test_untrained_shared_scorer_is_uniform_and_prior_learns():
    asi = ActiveSampleInference(
        hidden_channels=0, scorer='shared', modality_prior=True)
    log_pi = asi(torch.randn(3, 2, 4).log_softmax(-1))
    torch.testing.assert_close(log_pi.exp(), torch.full((3, 2), 0.5))
    with torch.no_grad():
        asi.prior.copy_(torch.tensor([0.0, math.log(3)]))
    pi = asi(torch.randn(3, 2, 4).log_softmax(-1)).exp()
    torch.testing.assert_close(pi, torch.tensor([[0.25, 0.75]] * 3))


def test_scorer_options_are_checked():
    with pytest.raises(ValueError, match='scorer must be'):
        ActiveSampleInference(scorer='pairwise')
    with pytest.raises(ValueError, match='query features'):
        ActiveSampleInference(scorer='shared', feature_channels=(4, 4))
    with pytest.raises(ValueError, match='modality_prior'):
        ActiveSampleInference(modality_prior=True)
    with pytest.raises(ValueError, match='hidden_channels > 0'):
        ActiveSampleInference(hidden_channels=0)


def test_recognizer_with_shared_scorer_trains_it():
    model = tiny_amfir(
        asi=dict(
            scorer='shared',
            hidden_channels=0,
            cross_modal=True,
            episode_evidence=('distance_margin', 'episode_rank')))
    feats, sample = feature_episode()  # 3 ways, 1 shot, 2 queries
    out = model.batch_outputs(feats, sample.metainfo)
    assert out['log_pi'].shape == (1, 6, 2)
    loss = model.loss_asi(out['log_pi'][0], out['log_probs'][0].detach(),
                          sample.gt_label)
    loss.backward()
    assert model.asi.mlp[0].weight.grad.abs().sum() > 0
