# AMFIR, 5-way 5-shot, UCF101 (ARN split) (see amfir_ucf101_1shot.py).
_base_ = ['./amfir_ucf101_1shot.py']
train_dataloader = dict(dataset=dict(num_shots=5))
val_dataloader = dict(dataset=dict(num_shots=5))
test_dataloader = dict(dataset=dict(num_shots=5))
