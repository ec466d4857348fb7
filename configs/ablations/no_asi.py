# Ablation: no ASI. pi = 1/2 for every query (no reliability net, no
# loss_asi); AMD and AMI still run, with pi = 1/2.
_base_ = ['../amfir_ssv2_1shot.py']
model = dict(reliability='uniform')
