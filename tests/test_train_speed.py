"""benchmarks/train_speed.py compares equal work: its amfir-mm loop and its
TRX-style loop compute the same loss and make the same update on the same
weights and episodes."""

import pytest
import torch

from conftest import load_script

WAYS, FRAMES, SIZE, TASKS_PER_BATCH = 3, 2, 16, 2


def _bench():
    return load_script('benchmarks/train_speed.py', 'train_speed')


def _model(bench):
    """Tiny AMFIR (ResNet-18 branches) in float64 with frozen BN
    statistics: training-mode BN is the one intended difference (one batch
    vs support and query batches), float64 keeps rounding out of it."""
    return bench.build_model(
        bench.BACKBONES['resnet18'], norm_eval=True).double()


@pytest.mark.slow
def test_loops_compute_the_same_loss_and_update():
    bench = _bench()
    episodes = [
        bench.make_episode(WAYS, 1, 1, FRAMES, SIZE, seed=s)
        for s in range(TASKS_PER_BATCH)
    ]
    optim_cfg = bench.optim_wrapper_cfg(tasks_per_batch=TASKS_PER_BATCH)
    ours = bench.AMFIRMMTrainer(_model(bench), optim_cfg)
    ref = bench.TRXStyleTrainer(_model(bench), optim_cfg, TASKS_PER_BATCH)
    before = {k: v.clone() for k, v in ours.model.state_dict().items()}
    for k, v in ref.model.state_dict().items():
        assert torch.equal(v, before[k])

    # the TRX-style split: support clips first, then queries
    task = ref.split(episodes[0])
    assert task['context']['imgs'].shape == (WAYS * FRAMES, 3, SIZE, SIZE)
    assert task['target']['flow'].shape == (WAYS * FRAMES, 2, SIZE, SIZE)
    with torch.no_grad():
        torch.testing.assert_close(
            ref.loss(task),
            ours.loss(ours.collate(episodes[0])),
            rtol=1e-10,
            atol=0)

    # one accumulation cycle: loss / 2, backward, backward + clip + step
    for episode in episodes:
        got = ref.train_episode(ref.split(episode))
        want = ours.train_episode(ours.collate(episode))
        torch.testing.assert_close(got, want, rtol=1e-10, atol=0)
    after = ours.model.state_dict()
    assert not torch.equal(after['branches.rgb.backbone.conv1.conv.weight'],
                           before['branches.rgb.backbone.conv1.conv.weight'])
    for name, value in ref.model.state_dict().items():
        torch.testing.assert_close(
            value, after[name], rtol=1e-9, atol=1e-12, msg=name)
