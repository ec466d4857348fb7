# AMFIR, 5-way 5-shot, SSv2-small (CMN split) (see amfir_ssv2small_1shot.py).
_base_ = ['./amfir_ssv2small_1shot.py']
train_dataloader = dict(dataset=dict(num_shots=5))
val_dataloader = dict(dataset=dict(num_shots=5))
test_dataloader = dict(dataset=dict(num_shots=5))
