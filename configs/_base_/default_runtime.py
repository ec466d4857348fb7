# amfir-mm's runtime: MMAction2's (hooks, env, visualizer, log level), plus
# only what differs for episodic, iteration-based few-shot training.
_base_ = ['mmaction::_base_/default_runtime.py']

# tools/train.py builds amfir_mm's modules by name: register them first.
custom_imports = dict(imports=['amfir_mm'], allow_failed_imports=False)

# One iteration is one episode (IterBasedTrainLoop): checkpoints and logs
# count iterations, not epochs (MMAction2: a checkpoint every epoch).
default_hooks = dict(
    checkpoint=dict(interval=1000, by_epoch=False, max_keep_ckpts=2))
log_processor = dict(by_epoch=False)
# Stop at the first NaN / Inf loss, naming the iteration and the loss terms,
# before its backward pass (the weights stay finite); `custom_hooks = []`
# or dict(type='NonFiniteLossHook', enabled=False) switches it off.
custom_hooks = [dict(type='NonFiniteLossHook')]
# Training curves for TensorBoard besides MMAction2's local files; the
# visualizer is rebuilt since MMAction2's refers to its own list.
vis_backends = [
    dict(type='LocalVisBackend'),
    dict(type='TensorboardVisBackend')
]
visualizer = dict(vis_backends=vis_backends)
# Episodes are drawn with seeded generators; seed the weights as well.
randomness = dict(seed=0, deterministic=False)
