# Demo: RGB prototype network on the generated moving-shapes data, trained
# from scratch on CPU in a few minutes (see README "Quick start").
_base_ = [
    '../_base_/default_runtime.py', '../_base_/schedules/demo_adam_300it.py',
    '../_base_/models/fewshot_rgb.py', '../_base_/datasets/shapes_rgb.py'
]
default_hooks = dict(
    logger=dict(interval=25),
    checkpoint=dict(
        interval=150, save_best='fewshot/accuracy', rule='greater'))
