# Ablation: no AMI. Meta-training is unchanged (same trained model); at test
# the two posteriors are fused with pi = 1/2 by the same (log-linear) rule
# instead of the predicted pi.
_base_ = ['../amfir_ssv2_1shot.py']
model = dict(adaptive_inference=False)
