# AMFIR on ../shared/data/ssv2_mini with the one ImageNet backbone that is
# available offline: EfficientNet-Lite0 (pip wheel), 112 px, 8 frames,
# 5-way 1-shot. RGB + flow branches, cosine prototype heads, ASI + AMD +
# AMI. Meta-training on 5 classes overfits a whole backbone (see
# benchmarks/RESULTS.md), so the backbones are frozen entirely
# (frozen_stages=8 covers every stage and the head convolution; BN in eval
# mode). What trains: per branch a TemporalAdapter on the frame features
# (identity at start, rank 64 over 3 frames, 176k weights) and the head's
# temperature, and the ASI net; AMD distils through the adapters, weighted
# by the labelled free-energy target r (amd_weights='target'), and ASI
# reads per-episode evidence (distance margins, the query's rank in its
# episode, the support set's separation). Measured by class
# cross-validation (benchmarks/RESULTS.md), the adapter overfits the 5
# training classes and lowers AMFIR's novel-class accuracy by 4.8 (1 shot)
# and 2.7 (5 shots) points, and inner folds of the training classes choose
# no adapter in 18 of 20 folds: with few training classes use
# amfir_ssv2mini_1shot_effl0_noadapter.py.
# With the stem frozen, flow enters as an (x, y, magnitude) image through
# the unmodified ImageNet stem (FlowMagnitudeImage, in_channels=3): the
# 2-channel cross-modality stem would sum flow-x and flow-y.
# Flow rawframes first (see _base_/datasets/ssv2_mini_paired.py):
#   python tools/extract_flow.py ../shared/data/ssv2_mini \
#       data/ssv2_mini_paired --method tvl1 --write-rgb --short-side 128
#   python tools/train.py configs/ssv2mini/amfir_ssv2mini_1shot_effl0.py
# RGB-only / flow-only models: --cfg-options "model.modalities=['rgb']".
# benchmarks/ssv2_mini.py trains and compares all of them.
_base_ = [
    '../_base_/models/amfir_paired.py', '../_base_/default_runtime.py',
    '../_base_/schedules/fewshot_iter.py',
    '../_base_/datasets/ssv2_mini_paired.py'
]
effl0 = dict(
    _delete_=True,
    type='EfficientNetLite',
    arch='efficientnet-lite0',
    pretrained='imagenet',
    norm_eval=True,
    frozen_stages=8,
    drop_connect_rate=0.0)
head = dict(
    _delete_=True,
    type='PrototypeHead',
    metric='cosine',
    temperature=0.1,
    adapter=dict(
        type='TemporalAdapter', in_channels=1280, rank=64, kernel_size=3))
imagenet_norm = dict(
    mean=[123.675, 116.28, 103.53], std=[58.395, 57.12, 57.375])
model = dict(
    rgb=dict(backbone=effl0, cls_head=head),
    flow=dict(in_channels=3, backbone=effl0, cls_head=head),
    data_preprocessor=dict(preprocessors=dict(flow=imagenet_norm)),
    # ASI: one linear scorer reads each modality's own label-free evidence
    # (posterior statistics, how probable the other modality finds its
    # top class, its distance margin and rank in the episode, its support
    # set's separation) and pi = softmax over the modalities' scores
    # (scorer='shared'): the modalities are exchangeable and a shift that
    # moves both modalities' evidence alike (novel classes' flatter
    # posteriors) cancels. Fixed a priori, by that argument, before the
    # class cross-validation that reports it; the joint MLP it replaces
    # (its pi ranked novel-class queries no better than chance, AUROC
    # 51-54%) is an ablation there. Its targets are sharpened (T = 0.1
    # instead of 1: with flat few-shot posteriors softmax(-G) stays near
    # 1/2), a choice made on val/ before the class cross-validation
    # existed.
    asi=dict(
        type='ActiveSampleInference',
        scorer='shared',
        topk=3,
        hidden_channels=0,
        cross_modal=True,
        episode_evidence=('distance_margin', 'episode_rank',
                          'prototype_spread', 'support_consistency'),
        normalize_evidence=True),
    amd_weights='target',
    loss_asi=dict(temperature=0.1),
    loss_amd=dict(type='AMDLoss', temperature=4.0, loss_weight=1.0))

# The dataset base's pipelines with flow as an (x, y, magnitude) image.
train_pipeline = _base_.train_pipeline_flow_image
test_pipeline = _base_.test_pipeline_flow_image
train_dataloader = dict(
    dataset=dict(num_queries=2, dataset=dict(pipeline=train_pipeline)))
test_dataloader = dict(
    dataset=dict(num_episodes=2000, dataset=dict(pipeline=test_pipeline)))
val_dataloader = dict(
    dataset=dict(num_episodes=500, dataset=dict(pipeline=test_pipeline)))

train_cfg = dict(max_iters=300, val_interval=300)
optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=1e-3, weight_decay=1e-2),
    clip_grad=dict(max_norm=10, norm_type=2))
param_scheduler = [
    dict(type='CosineAnnealingLR', by_epoch=False, T_max=300, eta_min=1e-6)
]
default_hooks = dict(
    logger=dict(interval=25),
    checkpoint=dict(interval=300, save_best=None, max_keep_ckpts=1))
