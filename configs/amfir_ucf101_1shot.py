# AMFIR, 5-way 1-shot, UCF101 (ARN split: 70/10/21 classes); all else
# (flips, 10,000 episodes) as amfir_hmdb51_1shot.py.
_base_ = ['./amfir_hmdb51_1shot.py']
data_root = 'data/ucf101'
train_dataloader = dict(dataset=dict(dataset=dict(data_root=data_root)))
val_dataloader = dict(dataset=dict(dataset=dict(data_root=data_root)))
test_dataloader = dict(dataset=dict(dataset=dict(data_root=data_root)))
