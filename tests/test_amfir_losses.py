"""ASI / AMD / AMI against hand computations on tiny tensors."""
import math

import numpy as np
import pytest
import torch

import amfir_mm  # noqa: F401
from amfir_mm.models.fusion import (ActiveSampleInference,
                                    cross_modal_evidence, fuse_posteriors,
                                    posterior_evidence, sharpen_reliability)
from amfir_mm.models.losses import AMDLoss, ASILoss, disagreement_mask

# one query, two modalities (rgb, flow), three classes; ground truth 0
P_RGB = [0.7, 0.2, 0.1]
P_FLOW = [0.4, 0.35, 0.25]


def log_probs(*rows):
    """``(M, S, N)`` log-posteriors from nested probability lists."""
    return torch.tensor(rows, dtype=torch.float64).log()


def np_kl(p, q):
    p, q = np.asarray(p), np.asarray(q)
    return float(np.sum(p * (np.log(p) - np.log(q))))


def np_softmax(x):
    x = np.asarray(x, dtype=np.float64)
    e = np.exp(x - x.max())
    return e / e.sum()


def test_asi_target_by_hand():
    eps, beta, temp = 0.1, 0.5, 2.0
    pref = [0.9 + 0.1 / 3, 0.1 / 3, 0.1 / 3]
    energies = []
    for p in (P_RGB, P_FLOW):
        risk = -sum(a * math.log(b) for a, b in zip(pref, p))
        entropy = -sum(b * math.log(b) for b in p)
        energies.append(risk + beta * entropy)
    expected = np_softmax([-g / temp for g in energies])
    loss = ASILoss(beta=beta, label_smoothing=eps, temperature=temp)
    target = loss.target(log_probs([P_RGB, P_FLOW]), torch.tensor([0]))
    np.testing.assert_allclose(target.numpy()[0], expected, rtol=1e-10)
    # the sharper, correct RGB posterior is the more reliable modality
    assert expected[0] > expected[1]


def test_asi_loss_is_kl_of_target_and_pi():
    loss = ASILoss(
        beta=1.0, label_smoothing=0.0, temperature=1.0, loss_weight=0.5)
    lp = log_probs([P_RGB, P_FLOW], [P_FLOW, P_RGB])
    labels = torch.tensor([0, 1])
    pi = torch.tensor([[0.3, 0.7], [0.6, 0.4]], dtype=torch.float64)
    energies = np.array(
        [[-math.log(p[y]) - sum(b * math.log(b) for b in p) for p in pair]
         for pair, y in (((P_RGB, P_FLOW), 0), ((P_FLOW, P_RGB), 1))])
    targets = [np_softmax(-g) for g in energies]
    expected = 0.5 * np.mean([np_kl(t, p) for t, p in zip(targets, pi)])
    value = loss(pi.log(), lp, labels)
    assert float(value) == pytest.approx(expected, rel=1e-10)


def test_asi_disagreement_loss_by_hand():
    """queries='disagreement': the KL of the all-queries loss, averaged
    over the queries where exactly one modality's top-1 is right."""
    both_right = [P_RGB, P_FLOW]  # label 0: both argmax 0
    flow_right = [[0.2, 0.7, 0.1], P_FLOW]  # rgb says 1, flow 0
    rgb_right = [P_RGB, [0.3, 0.3, 0.4]]  # flow says 2
    both_wrong = [[0.1, 0.8, 0.1], [0.2, 0.2, 0.6]]
    lp = log_probs(both_right, flow_right, rgb_right, both_wrong)
    labels = torch.tensor([0, 0, 0, 0])
    pi = torch.tensor([[0.5, 0.5], [0.8, 0.2], [0.1, 0.9], [0.6, 0.4]],
                      dtype=torch.float64)
    assert disagreement_mask(lp, labels).tolist() == [False, True, True, False]
    eps, beta, temp = 0.1, 1.0, 0.5
    pref = np.full(3, eps / 3)
    pref[0] += 1 - eps
    targets = []
    for pair in (flow_right, rgb_right):
        energies = [
            -(pref * np.log(p)).sum() - beta * (p * np.log(p)).sum()
            for p in np.asarray(pair)
        ]
        targets.append(np_softmax(-np.asarray(energies) / temp))
    expected = 2.0 * np.mean(
        [np_kl(targets[0], pi[1]),
         np_kl(targets[1], pi[2])])
    loss = ASILoss(temperature=temp, queries='disagreement', loss_weight=2.0)
    assert float(loss(pi.log(), lp, labels)) == pytest.approx(
        expected, rel=1e-10)
    # the flow-right query's target prefers flow, the rgb-right one rgb
    assert targets[0][1] > 0.5 > targets[1][1]
    # no disagreement in the episode: zero, and a zero gradient
    logits = torch.zeros(2, 2, dtype=torch.float64, requires_grad=True)
    value = loss(logits.log_softmax(-1), lp[[0, 3]], labels[:2])
    value.backward()
    assert float(value.detach()) == 0 and not logits.grad.any()
    with pytest.raises(ValueError, match='queries must be one of'):
        ASILoss(queries='confident')


def test_asi_gradient_moves_pi_toward_target():
    loss = ASILoss()
    lp = log_probs([P_RGB, P_FLOW])
    target = loss.target(lp, torch.tensor([0]))
    logits = torch.zeros(1, 2, dtype=torch.float64, requires_grad=True)
    loss(logits.log_softmax(-1), lp, torch.tensor([0])).backward()
    # d KL(r || softmax(z)) / dz = softmax(z) - r (one query)
    np.testing.assert_allclose(
        logits.grad.numpy(), (0.5 - target).numpy(), rtol=1e-10)
    stepped = (logits - 1.0 * logits.grad).softmax(-1)
    assert (stepped - target).abs().sum() < (0.5 - target).abs().sum()


@pytest.mark.slow
def test_asi_net_learns_target_and_trains_nothing_else():
    torch.manual_seed(0)
    net = ActiveSampleInference(num_modalities=2, topk=3)
    loss = ASILoss()
    branch_logits = torch.randn(8, 2, 5, requires_grad=True)
    labels = torch.randint(0, 5, (8, ))
    lp = branch_logits.log_softmax(-1)
    log_pi = net(lp)
    assert torch.allclose(log_pi.exp(), torch.full((8, 2), 0.5))
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    values = []
    for _ in range(100):
        opt.zero_grad()
        value = loss(net(lp), lp, labels)
        values.append(float(value.detach()))
        value.backward()
        opt.step()
    assert values[-1] < 0.5 * values[0]
    assert branch_logits.grad is None  # evidence and target are detached


def test_posterior_evidence_by_hand():
    ev = posterior_evidence(log_probs([P_RGB, P_FLOW]), topk=4)
    entropy = -sum(p * math.log(p) for p in P_RGB) / math.log(3)
    rgb = [0.7, 0.2, 0.1, 0.0, entropy, 0.5]
    np.testing.assert_allclose(ev[0, :6].numpy(), rgb, rtol=1e-10)
    assert ev.shape == (1, 12)
    assert float(ev[0, 11]) == pytest.approx(0.05)  # flow margin


def test_cross_modal_evidence_by_hand():
    # both top classes are 0: p_rgb(0) = 0.7, p_flow(0) = 0.4, agree = 1
    mix = [(a + b) / 2 for a, b in zip(P_RGB, P_FLOW)]
    js = 0.5 * (np_kl(P_RGB, mix) + np_kl(P_FLOW, mix)) / math.log(2)
    ev = cross_modal_evidence(log_probs([P_RGB, P_FLOW]))
    np.testing.assert_allclose(ev[0].numpy(), [0.7, 0.4, 1.0, js], rtol=1e-10)
    # disagreeing tops; identical posteriors give JS 0, disjoint ones 1
    p_other = [0.1, 0.6, 0.3]
    ev = cross_modal_evidence(
        log_probs([P_RGB, p_other], [P_RGB, P_RGB],
                  [[1 - 1e-9, 1e-9 / 2, 1e-9 / 2],
                   [1e-9 / 2, 1 - 1e-9, 1e-9 / 2]]))
    np.testing.assert_allclose(ev[0, :3].numpy(), [0.2, 0.1, 0.0], rtol=1e-10)
    assert float(ev[1, 3]) == pytest.approx(0.0, abs=1e-12)
    assert float(ev[2, 3]) == pytest.approx(1.0, abs=1e-6)


def test_asi_cross_modal_input_width():
    asi = ActiveSampleInference(num_modalities=2, topk=3, cross_modal=True)
    assert asi.mlp[0].in_features == 2 * (3 + 2) + 4
    lp = torch.randn(6, 2, 5).log_softmax(-1)
    pi = asi(lp).exp()
    assert pi.shape == (6, 2)
    torch.testing.assert_close(pi, torch.full((6, 2), 0.5))  # zero init


def test_amd_by_hand():
    temp = 2.0
    z_rgb, z_flow = [2.0, 0.5, -1.0], [0.3, 0.1, 0.2]
    pi = [0.8, 0.2]
    p_rgb, p_flow = np_softmax(np.array(z_rgb) /
                               temp), np_softmax(np.array(z_flow) / temp)
    expected = temp**2 * (
        pi[0] * np_kl(p_rgb, p_flow) + pi[1] * np_kl(p_flow, p_rgb))
    logits = torch.tensor([[z_rgb, z_flow]], dtype=torch.float64)
    weights = torch.tensor([pi], dtype=torch.float64)
    value = AMDLoss(temperature=temp, loss_weight=1.0)(logits, weights)
    assert float(value) == pytest.approx(expected, rel=1e-10)


def test_amd_teacher_gets_no_gradient():
    logits = torch.randn(4, 2, 5, requires_grad=True)
    weights = torch.tensor([[1.0, 0.0]]).repeat(4, 1)  # rgb teaches flow
    AMDLoss()(logits, weights).backward()
    assert torch.all(logits.grad[:, 0] == 0)  # the teacher
    assert logits.grad[:, 1].abs().sum() > 0  # the student


def test_fusion_by_hand():
    lp = log_probs([P_RGB, P_FLOW])
    w = torch.tensor([[0.25, 0.75]], dtype=torch.float64)
    geo = np.array(P_RGB)**0.25 * np.array(P_FLOW)**0.75
    np.testing.assert_allclose(
        fuse_posteriors(lp, w, 'log_linear').exp()[0].numpy(),
        geo / geo.sum(),
        rtol=1e-10)
    mix = 0.25 * np.array(P_RGB) + 0.75 * np.array(P_FLOW)
    np.testing.assert_allclose(
        fuse_posteriors(lp, w, 'mixture').exp()[0].numpy(), mix, rtol=1e-10)
    with pytest.raises(ValueError):
        fuse_posteriors(lp, w, 'max')


def test_sharpened_reliability_by_hand():
    pi = torch.tensor([[0.2, 0.8], [0.5, 0.5]], dtype=torch.float64)
    sharp = sharpen_reliability(pi.log(), 2.0)
    np.testing.assert_allclose(sharp[0].numpy(), [0.04 / 0.68, 0.64 / 0.68])
    np.testing.assert_allclose(sharp[1].numpy(), [0.5, 0.5])
    torch.testing.assert_close(sharpen_reliability(pi.log(), 1.0), pi)
    torch.testing.assert_close(
        sharpen_reliability(pi.log(), 0.0), torch.full_like(pi, 0.5))


def test_mixture_with_zero_weight_has_finite_gradient():
    lp = log_probs([P_RGB, P_FLOW]).requires_grad_()
    w = torch.tensor([[1.0, 0.0]], dtype=torch.float64, requires_grad=True)
    fused = fuse_posteriors(lp, w, 'mixture')
    np.testing.assert_allclose(fused.exp()[0].detach().numpy(), P_RGB)
    fused[0, 0].backward()
    assert torch.isfinite(w.grad).all() and torch.isfinite(lp.grad).all()
