# The quick-start job (amfir_shapes_1shot_r18.py) plus a second, held-out-
# class ASI stage (amfir_mm.engine.AMFIRTrainLoop): after the 300
# iterations the branches are frozen and the reliability net alone is
# trained on loss_asi for 100 episodes of the validation classes (the val
# loader's config and pipeline, each video embedded once), which the
# branches never saw, so their posteriors there look like novel-class
# posteriors. The final checkpoint (iter_300.pth) holds the stage-2 ASI.
# The val classes then no longer measure ASI without bias: the test split
# does.
_base_ = './amfir_shapes_1shot_r18.py'
train_cfg = dict(
    type='AMFIRTrainLoop',
    asi_stage=dict(
        iters=100,
        log_interval=10,
        optim_wrapper=dict(optimizer=dict(type='AdamW', lr=1e-3))))
