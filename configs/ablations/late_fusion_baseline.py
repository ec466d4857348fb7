# Baseline, not a one-piece ablation: plain two-stream late fusion. It
# changes three things at once: pi = 1/2 for every query (no ASI net), no
# AMD, and the fused posterior is the average of the two posteriors
# (mixture, at training and test). The one-piece ablations are no_asi,
# no_amd, no_ami and mixture_fusion.
_base_ = ['../amfir_ssv2_1shot.py']
model = dict(reliability='uniform', loss_amd=None, fusion='mixture')
