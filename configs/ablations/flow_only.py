# Ablation: flow branch only (no RGB, fusion, AMD or ASI).
_base_ = ['../amfir_ssv2_1shot.py']
model = dict(modalities=('flow', ))
