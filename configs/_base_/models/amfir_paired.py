# AMFIR (Active Multimodal Distillation for Few-shot Action Recognition):
# an RGB and a flow branch, fused by ASI / AMD / AMI. Each branch defaults
# to an ImageNet ResNet-50 (TSN-style per-frame features) + an OTAM head;
# children swap the backbone or the head (demo/, ssv2mini/, the smoke run).
# The URL is the file `torchvision://resnet50` resolves to (MMEngine's
# torchvision map); spelt out so that torchvision need not be installed.
# The flow branch's first conv gets TSN's cross-modality initialisation
# (ImageNet kernel averaged over RGB, repeated for the 2 flow channels).
# Swap a head with e.g. cls_head=dict(type='TRXHead', in_channels=2048) or
# dict(type='PrototypeHead').
resnet50 = dict(
    type='ResNet',
    depth=50,
    norm_eval=False,
    pretrained='https://download.pytorch.org/models/resnet50-0676ba61.pth')
otam_head = dict(type='OTAMHead', gamma=0.1, temperature=1.0)
model = dict(
    type='AMFIRRecognizer',
    rgb=dict(backbone=resnet50, cls_head=otam_head),
    flow=dict(in_channels=2, backbone=resnet50, cls_head=otam_head),
    modalities=('rgb', 'flow'),
    reliability='asi',  # 'uniform': no ASI (pi = 1/2)
    asi=dict(type='ActiveSampleInference', topk=3, hidden_channels=64),
    fusion='log_linear',  # AMI: 'log_linear' | 'mixture'
    adaptive_inference=True,  # False: uniform weights at test (no AMI)
    detach_reliability=True,
    loss_fused=dict(type='CrossEntropyLoss', loss_weight=1.0),  # lambda_fuse
    loss_amd=dict(type='AMDLoss', temperature=4.0, loss_weight=1.0),
    loss_asi=dict(
        type='ASILoss',
        beta=1.0,
        label_smoothing=0.1,
        temperature=1.0,
        loss_weight=1.0),
    data_preprocessor=dict(
        type='MultiModalDataPreprocessor',
        preprocessors=dict(
            imgs=dict(
                type='ActionDataPreprocessor',
                mean=[123.675, 116.28, 103.53],
                std=[58.395, 57.12, 57.375],
                format_shape='NCHW'),
            # quantised flow rawframes: 128 = 0 px (see paired.py)
            flow=dict(
                type='ActionDataPreprocessor',
                mean=[128, 128],
                std=[128, 128],
                format_shape='NCHW'))))
