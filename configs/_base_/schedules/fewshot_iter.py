# Episodic meta-training: one iteration = one optimiser step over
# `train_dataloader.batch_size` episodes (x `accumulative_counts`).
train_cfg = dict(type='IterBasedTrainLoop', max_iters=10000, val_interval=1000)
val_cfg = dict(type='CachedEpisodeValLoop')
test_cfg = dict(type='CachedEpisodeTestLoop')

optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='SGD', lr=1e-3, momentum=0.9, weight_decay=5e-4),
    clip_grad=dict(max_norm=40, norm_type=2))
param_scheduler = [
    dict(
        type='MultiStepLR', by_epoch=False, milestones=[6000, 9000], gamma=0.1)
]
