# AMFIR, 5-way 5-shot, Kinetics-100 (CMN split); see the 1-shot config.
_base_ = ['./amfir_kinetics100_1shot.py']
train_dataloader = dict(dataset=dict(num_shots=5))
val_dataloader = dict(dataset=dict(num_shots=5))
test_dataloader = dict(dataset=dict(num_shots=5))
