# Single-modality few-shot recogniser on RGB frames: a stock MMAction2
# ResNet-18 (from scratch) + a cosine prototype head; children swap the
# backbone (fewshot_rgb/).
model = dict(
    type='FewShotRecognizer',
    backbone=dict(type='ResNet', depth=18, pretrained=None, norm_eval=False),
    cls_head=dict(type='PrototypeHead', metric='cosine', temperature=0.1),
    data_preprocessor=dict(
        type='ActionDataPreprocessor',
        mean=[123.675, 116.28, 103.53],
        std=[58.395, 57.12, 57.375],
        format_shape='NCHW'))
