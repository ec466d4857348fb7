# AMFIR, 5-way 1-shot, UCF101 (ARN split).
# RGB + flow ResNet-50 branches with OTAM heads, ASI / AMD / AMI; 8 frames,
# 224 crops; 10,000 training episodes (16 per optimiser step);
# val 1,000 and test 10,000 episodes.
_base_ = [
    './_base_/schedules/amfir_sgd.py', './_base_/models/amfir_r50.py',
    './_base_/datasets/ucf101_paired.py'
]

train_cfg = dict(max_iters=10000, val_interval=2000)
default_hooks = dict(checkpoint=dict(interval=2000))
