# AMFIR on ssv2_mini without the TemporalAdapters: the frozen ImageNet
# features as they are, so what trains is the two head temperatures and
# ASI (AMD can move only the temperatures). This is the model the inner
# class cross-validation of benchmarks/ssv2_mini.py --select chooses for 5
# training classes (on each outer fold's training classes alone: no
# adapter in 10 of 10 folds at 1 shot and 8 of 10 at 5 shots; see
# benchmarks/RESULTS.md). The adapter config it inherits from is the one
# to start from with more training classes (the 64 of the SSv2 splits).
_base_ = ['./amfir_ssv2mini_1shot_effl0.py']
model = dict(
    rgb=dict(cls_head=dict(adapter=None)),
    flow=dict(cls_head=dict(adapter=None)))
