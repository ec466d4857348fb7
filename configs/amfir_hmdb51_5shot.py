# AMFIR, 5-way 5-shot, HMDB51 (ARN split) (see amfir_hmdb51_1shot.py).
_base_ = ['./amfir_hmdb51_1shot.py']
train_dataloader = dict(dataset=dict(num_shots=5))
val_dataloader = dict(dataset=dict(num_shots=5))
test_dataloader = dict(dataset=dict(num_shots=5))
