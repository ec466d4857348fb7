# The quick-start job (tools/demo.py): AMFIR with RGB and DIS-flow ResNet-18
# branches trained from scratch on the generated moving-shapes data, CPU,
# a few minutes. Test classes are unseen shape/motion pairs; RGB prototypes
# average frames and so cannot tell "left" from "right": flow can.
_base_ = [
    '../_base_/default_runtime.py', '../_base_/schedules/demo_adam_300it.py',
    '../_base_/models/amfir_paired.py', '../_base_/datasets/shapes_paired.py'
]
r18 = dict(type='ResNet', depth=18, pretrained=None, norm_eval=False)
head = dict(
    _delete_=True, type='PrototypeHead', metric='cosine', temperature=0.1)
model = dict(
    rgb=dict(backbone=r18, cls_head=head),
    flow=dict(backbone=r18, cls_head=head))
# Progress from the start (a line every 10 iterations); one checkpoint, the
# final weights only (~90 MB, what tools/test.py and tools/fewshot_infer.py
# need; with the optimiser state and a "best" copy it was ~600 MB). The
# meta-test uses the final weights, so no "best" checkpoint is kept.
default_hooks = dict(
    logger=dict(interval=10),
    checkpoint=dict(
        interval=300,
        save_best=None,
        max_keep_ckpts=1,
        save_optimizer=False,
        save_param_scheduler=False))
