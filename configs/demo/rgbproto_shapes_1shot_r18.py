# Demo: RGB prototype network on the generated moving-shapes data, trained
# from scratch on CPU in a few minutes (see README "Quick start").
_base_ = [
    '../_base_/default_runtime.py', '../_base_/schedules/fewshot_iter.py',
    '../_base_/models/fewshot_rgb.py', '../_base_/datasets/shapes_rgb.py'
]
train_cfg = dict(max_iters=300, val_interval=150)
optim_wrapper = dict(optimizer=dict(_delete_=True, type='Adam', lr=1e-3))
param_scheduler = [
    dict(type='CosineAnnealingLR', by_epoch=False, T_max=300, eta_min=1e-5)
]
default_hooks = dict(
    logger=dict(interval=25),
    checkpoint=dict(
        interval=150, save_best='fewshot/accuracy', rule='greater'))
