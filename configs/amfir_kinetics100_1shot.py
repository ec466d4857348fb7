# AMFIR, 5-way 1-shot, Kinetics-100 (CMN split: 64/12/24 classes x 100
# videos); all else (flips, 10,000 episodes) as amfir_hmdb51_1shot.py.
_base_ = ['./amfir_hmdb51_1shot.py']
data_root = 'data/kinetics100'
train_dataloader = dict(dataset=dict(dataset=dict(data_root=data_root)))
val_dataloader = dict(dataset=dict(dataset=dict(data_root=data_root)))
test_dataloader = dict(dataset=dict(dataset=dict(data_root=data_root)))
