# TRX-style meta-training schedule (Perrett et al., CVPR 2021): SGD,
# lr 1e-3, gradients averaged over 16 episodes per optimiser step, constant
# learning rate. One iteration = one episode (batch_size=1), so max_iters
# counts episodes. Builds on the runtime (its checkpoint / logger hooks are
# adjusted here) and the loops of fewshot_iter.py.
_base_ = ['../default_runtime.py', './fewshot_iter.py']
train_cfg = dict(type='IterBasedTrainLoop', max_iters=75000, val_interval=5000)
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='SGD', lr=1e-3, momentum=0.9, weight_decay=5e-4),
    accumulative_counts=16,
    clip_grad=dict(max_norm=40, norm_type=2))
param_scheduler = []  # constant lr, as TRX
default_hooks = dict(
    logger=dict(interval=50),
    checkpoint=dict(
        interval=5000,
        max_keep_ckpts=3,
        save_best='fewshot/accuracy',
        rule='greater'))
