# The demos' short schedule: 300 iterations of Adam (1e-3) with a cosine
# decay, validation halfway and at the end.
_base_ = ['./fewshot_iter.py']
train_cfg = dict(max_iters=300, val_interval=150)
optim_wrapper = dict(optimizer=dict(_delete_=True, type='Adam', lr=1e-3))
param_scheduler = [
    dict(type='CosineAnnealingLR', by_epoch=False, T_max=300, eta_min=1e-5)
]
