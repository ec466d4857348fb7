# Ablation: no AMD (lambda_AMD = 0: the loss_amd term is not computed).
_base_ = ['../amfir_ssv2_1shot.py']
model = dict(loss_amd=None)
