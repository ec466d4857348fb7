# AMFIR, 5-way 1-shot, HMDB51 (ARN split: 31/10/10 classes).
# RGB + flow ResNet-50 branches with OTAM heads, ASI / AMD / AMI; 8 frames,
# 224 crops; 10,000 training episodes (16 per optimiser step);
# val 1,000 and test 10,000 episodes. The training pipeline flips: HMDB51's
# labels survive a horizontal flip (SSv2's name directions).
_base_ = [
    './_base_/models/amfir_paired.py', './_base_/datasets/fewshot_paired.py',
    './_base_/schedules/amfir_sgd.py'
]
data_root = 'data/hmdb51'
train_dataloader = dict(
    dataset=dict(
        dataset=dict(data_root=data_root,
                     pipeline=_base_.train_pipeline_flip)))
val_dataloader = dict(dataset=dict(dataset=dict(data_root=data_root)))
test_dataloader = dict(dataset=dict(dataset=dict(data_root=data_root)))
train_cfg = dict(max_iters=10000, val_interval=2000)
default_hooks = dict(checkpoint=dict(interval=2000))
