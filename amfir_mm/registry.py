"""amfir-mm's own registries (in the style of ``mmaction/registry.py``).

Models, heads, datasets, transforms, loops and metrics are registered in
MMAction2's registries (``mmaction.registry``). Flow estimators are not
``nn.Module`` s and belong to none of them: they have their own registry,
searched under the ``amfir_mm`` scope (see
:func:`amfir_mm.flow.build_flow_estimator`), whose modules are imported from
``amfir_mm.flow`` on first use.
"""
from mmengine.registry import Registry

#: Optical flow estimators (:class:`amfir_mm.flow.BaseFlowEstimator`).
FLOW_ESTIMATORS = Registry(
    'flow estimator', scope='amfir_mm', locations=['amfir_mm.flow'])
