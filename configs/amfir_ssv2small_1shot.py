# AMFIR, 5-way 1-shot, SSv2-small (CMN split: 64/12/24 classes x 100
# videos); all else as amfir_ssv2_1shot.py.
_base_ = ['./amfir_ssv2_1shot.py']
data_root = 'data/ssv2_small'
train_dataloader = dict(dataset=dict(dataset=dict(data_root=data_root)))
val_dataloader = dict(dataset=dict(dataset=dict(data_root=data_root)))
test_dataloader = dict(dataset=dict(dataset=dict(data_root=data_root)))
