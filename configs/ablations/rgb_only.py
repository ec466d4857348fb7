# Ablation: RGB branch only (no flow, fusion, AMD or ASI).
_base_ = ['../amfir_ssv2_1shot.py']
model = dict(modalities=('rgb', ))
