"""A config the user wrote wrong is one ``ConfigError`` naming the file:
when read (``load_config``), and when what it names is built (the tools
through ``run_tool``, ``FewShotInferencer``)."""
import re
import tempfile

import pytest

from amfir_mm.apis import FewShotInferencer
from amfir_mm.utils.config import ConfigError, load_config, registry_error
from amfir_mm.utils.io import DataError
from amfir_mm.utils.tool import run_tool
from conftest import PROJECT_ROOT, load_script

DEMO = PROJECT_ROOT / 'configs/demo/amfir_shapes_1shot_r18.py'
HINT = ('(a typo, or custom_imports does not import the module that '
        'registers it)')


@pytest.mark.parametrize('files,read,message', [
    ({}, 'missing.py', '{d}/missing.py: no such config file'),
    ({
        'broken.py': 'a = 1\nb = (\n'
    }, 'broken.py', "{d}/broken.py: syntax error: line 2: '(' was never "
     'closed'),
    ({
        'broken.py': 'b = (\n',
        'child.py': "_base_ = ['./broken.py']\n"
    }, 'child.py', "{d}/child.py: a _base_ file: syntax error: its line 1: "
     "'(' was never closed"),
    ({
        'child.py': "_base_ = ['./gone.py']\n"
    }, 'child.py', "{d}/child.py: FileNotFoundError: [Errno 2] No such file "
     "or directory: '{d}/./gone.py'"),
    ({
        'code.py': 'x = 1\ny = undefined_name + x\n'
    }, 'code.py', "{d}/code.py: NameError: name 'undefined_name' is not "
     'defined'),
])
def test_load_config_errors_name_the_file(tmp_path, files, read, message):
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path / read)
    assert str(info.value) == message.format(d=tmp_path)
    assert isinstance(info.value, DataError)


def test_load_config_reads_a_good_one():
    cfg = load_config(DEMO)
    assert cfg.model.type == 'AMFIRRecognizer'
    assert cfg.filename == str(DEMO)


def test_registry_error_is_only_the_registry_key_error():
    err = KeyError('NoSuchHead is not in the mmaction::model registry. '
                   'Please check whether the value of `NoSuchHead` is '
                   'correct or it was registered as expected.')
    assert str(registry_error(err, 'a/b.py')) == (
        "a/b.py: type 'NoSuchHead' is not in the mmaction::model registry " +
        HINT)
    assert registry_error(KeyError('rgb'), 'a/b.py') is None
    assert registry_error(ValueError('x is not in the y registry'),
                          'a/b.py') is None


def _unregistered(tmp_path, part):
    config = tmp_path / 'typo.py'
    config.write_text(f"_base_ = ['{DEMO}']\n"
                      f"model = dict({part}=dict(type='NoSuch'))\n")
    return config


def test_train_with_an_unregistered_type_is_one_line(tmp_path, capsys,
                                                     monkeypatch):
    """tools/train.py: the config's model names an unregistered type; one
    line names the config and the type, and the run leaves no work dir."""
    (tmp_path / 'tmp').mkdir()
    monkeypatch.setattr(tempfile, 'tempdir', str(tmp_path / 'tmp'))
    config = _unregistered(tmp_path, 'rgb')  # the RGB branch's type
    work = tmp_path / 'work'
    tool = load_script('tools/train.py', 'amfir_train_tool_config')
    status = run_tool(tool.main, 'train',
                      [str(config), '--work-dir',
                       str(work)])
    out, err = capsys.readouterr()
    assert status == 1
    assert err == (f"ConfigError: {config}: type 'NoSuch' is not in the "
                   f'mmaction::model registry {HINT}\n')
    assert re.search(r'^full traceback: ', out, re.M)
    assert not work.exists()


def test_train_with_a_broken_config_is_one_line(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(tempfile, 'tempdir', str(tmp_path))
    config = tmp_path / 'broken.py'
    config.write_text('model = dict(\n')
    tool = load_script('tools/train.py', 'amfir_train_tool_config2')
    assert run_tool(tool.main, 'train', [str(config)]) == 1
    assert capsys.readouterr().err == (
        f"ConfigError: {config}: syntax error: line 1: '(' was never "
        'closed\n')


def test_inferencer_config_errors_name_the_file(tmp_path):
    with pytest.raises(
            ConfigError,
            match=re.escape(f'{tmp_path}/none.py: no such config file')):
        FewShotInferencer(tmp_path / 'none.py')
    config = _unregistered(tmp_path, 'flow')
    with pytest.raises(ConfigError) as info:
        FewShotInferencer(str(config))
    assert str(info.value) == (f"{config}: type 'NoSuch' is not in the "
                               f'mmaction::model registry {HINT}')
