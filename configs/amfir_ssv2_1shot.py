# AMFIR, 5-way 1-shot, SSv2-full (OTAM split: 64/12/24 classes; lines
# trainK/<id>). RGB + flow ResNet-50 branches with OTAM heads, ASI / AMD /
# AMI; 8 frames, 224 crops; 75,000 training episodes (16 per optimiser
# step); val 1,000 and test 10,000 episodes.
_base_ = [
    './_base_/models/amfir_paired.py', './_base_/datasets/fewshot_paired.py',
    './_base_/schedules/amfir_sgd.py'
]
data_root = 'data/ssv2_full'
train_dataloader = dict(dataset=dict(dataset=dict(data_root=data_root)))
val_dataloader = dict(dataset=dict(dataset=dict(data_root=data_root)))
test_dataloader = dict(dataset=dict(dataset=dict(data_root=data_root)))
