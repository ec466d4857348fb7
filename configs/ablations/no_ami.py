# Ablation: no AMI. Meta-training is unchanged; at test the two posteriors
# are fused with uniform weights instead of the predicted pi.
_base_ = ['../amfir_ssv2_1shot.py']
model = dict(adaptive_inference=False)
