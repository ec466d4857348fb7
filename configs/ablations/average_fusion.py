# Ablation: plain two-stream late fusion. pi = 1/2 for every query (no ASI
# net), no AMD, and the fused posterior is the average of the two
# posteriors (train and test).
_base_ = ['../amfir_ssv2_1shot.py']
model = dict(reliability='uniform', loss_amd=None, fusion='mixture')
