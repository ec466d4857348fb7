# CPU smoke test of the whole AMFIR pipeline on real SSv2 frames with DIS
# flow (see _base_/datasets/ssv2_mini_paired.py for the flow extraction):
# ResNet-18 branches from scratch, 112 px, 5-way 1-shot, a few iterations.
#   python tools/train.py configs/amfir_ssv2mini_1shot_r18_smoke.py
_base_ = [
    './_base_/schedules/amfir_sgd.py', './_base_/models/amfir_paired.py',
    './_base_/datasets/ssv2_mini_paired.py'
]
r18 = dict(type='ResNet', depth=18, pretrained=None, norm_eval=False)
model = dict(rgb=dict(backbone=r18), flow=dict(backbone=r18))
train_cfg = dict(max_iters=12, val_interval=12)
val_dataloader = dict(dataset=dict(num_episodes=10))
test_dataloader = val_dataloader
optim_wrapper = dict(accumulative_counts=1)
default_hooks = dict(
    logger=dict(interval=1), checkpoint=dict(interval=12, max_keep_ckpts=1))
