# RGB baseline on ../shared/data/ssv2_mini: ImageNet EfficientNet-Lite0 +
# cosine prototype head, meta-trained on train/, meta-validated on val/.
_base_ = [
    '../_base_/default_runtime.py', '../_base_/schedules/fewshot_iter.py',
    '../_base_/models/fewshot_rgb.py', '../_base_/datasets/ssv2_mini_rgb.py'
]
model = dict(
    backbone=dict(
        _delete_=True,
        type='EfficientNetLite',
        arch='efficientnet-lite0',
        pretrained='imagenet',
        norm_eval=True))
train_cfg = dict(max_iters=200, val_interval=200)
optim_wrapper = dict(
    optimizer=dict(_delete_=True, type='Adam', lr=2e-5), clip_grad=None)
param_scheduler = []
default_hooks = dict(
    logger=dict(interval=25), checkpoint=dict(interval=200, save_best=None))
