# Ablation: the fusion rule. AMI (and the fused training loss) mix the two
# posteriors, p = sum_m pi_m p_m, instead of the log-linear product
# p ~ prod_m p_m ** pi_m; ASI, AMD and pi at test time are unchanged.
_base_ = ['../amfir_ssv2_1shot.py']
model = dict(fusion='mixture')
