# Ablation: no ASI. pi = 1/2 for every query at training and test (no
# reliability net, no loss_asi); AMD and the fusion rule (log-linear) are
# unchanged and run with pi = 1/2.
_base_ = ['../amfir_ssv2_1shot.py']
model = dict(reliability='uniform')
