"""The moving-shapes generator never deletes or overwrites what it did not
make (tools/demo.py --data DIR, tools/make_shapes_dataset.py)."""
import json
import os
import subprocess
import sys

import cv2
import pytest

from amfir_mm.datasets import read_split_file
from amfir_mm.datasets.synthetic_shapes import (INCOMPLETE_MARKER,
                                                make_shapes_dataset)
from amfir_mm.utils.io import RefuseOverwriteError
from conftest import PROJECT_ROOT

SMALL = dict(videos_per_class=1, num_frames=2, size=16)


def user_folder(path):
    """A folder of someone's own files; returns its content to compare."""
    (path / 'thesis').mkdir(parents=True)
    (path / 'thesis' / 'draft.tex').write_text('precious\n')
    return snapshot(path)


def snapshot(path):
    return {
        str(p.relative_to(path)): p.read_bytes() if p.is_file() else None
        for p in sorted(path.rglob('*'))
    }


def test_writes_a_complete_dataset(tmp_path):
    root = tmp_path / 'shapes'
    out = make_shapes_dataset(str(root), **SMALL)
    assert sorted(os.listdir(root)) == ['.complete', 'rawframes', 'splits']
    assert json.loads((root / '.complete').read_text()) == dict(SMALL, seed=0)
    assert not (tmp_path / 'shapes.partial').exists()
    entries = read_split_file(out['test'])
    assert len(entries) == 5  # 5 novel classes x 1 video
    frame = cv2.imread(f"{out['rawframes']}/{entries[0].rel_dir}/"
                       'img_00002.jpg')
    assert frame.shape == (16, 16, 3)
    # a second call reuses it (nothing rewritten)
    stamp = os.stat(root / '.complete').st_mtime_ns
    assert make_shapes_dataset(str(root) + '/', **SMALL) == out
    assert os.stat(root / '.complete').st_mtime_ns == stamp


@pytest.mark.parametrize('overwrite', [False, True])
def test_refuses_a_folder_it_did_not_make(tmp_path, overwrite):
    root = tmp_path / 'mine'
    before = user_folder(root)
    with pytest.raises(
            RefuseOverwriteError,
            match=r'mine exists and is not an empty folder or a '
            'shapes dataset made by this tool'):
        make_shapes_dataset(str(root), overwrite=overwrite, **SMALL)
    assert snapshot(root) == before
    assert not (tmp_path / 'mine.partial').exists()


def test_refuses_a_dataset_folder_with_foreign_files(tmp_path):
    """``overwrite`` replaces a dataset only while it holds nothing else."""
    root = tmp_path / 'shapes'
    make_shapes_dataset(str(root), **SMALL)
    (root / 'rawframes' / 'notes.txt').write_text('mine\n')
    (root / 'flow').mkdir()
    before = snapshot(root)
    with pytest.raises(RefuseOverwriteError, match='other files in it'):
        make_shapes_dataset(str(root), overwrite=True, **SMALL)
    assert snapshot(root) == before


def test_empty_folder_is_used(tmp_path):
    root = tmp_path / 'empty'
    root.mkdir()
    make_shapes_dataset(str(root), **SMALL)
    assert (root / '.complete').is_file()


def test_other_settings_need_overwrite(tmp_path):
    root = tmp_path / 'shapes'
    make_shapes_dataset(str(root), **SMALL)
    bigger = dict(SMALL, videos_per_class=2)
    with pytest.raises(RefuseOverwriteError, match='--overwrite'):
        make_shapes_dataset(str(root), **bigger)
    out = make_shapes_dataset(str(root), overwrite=True, **bigger)
    assert len(read_split_file(out['test'])) == 10
    assert sorted(os.listdir(tmp_path)) == ['shapes']  # no leftovers


def test_interrupted_run_is_redone_but_a_foreign_partial_is_kept(tmp_path):
    root, partial = tmp_path / 'shapes', tmp_path / 'shapes.partial'
    # what an interrupted run leaves: the marker, some frames, no splits
    (partial / 'rawframes' / 'x').mkdir(parents=True)
    (partial / INCOMPLETE_MARKER).touch()
    make_shapes_dataset(str(root), **SMALL)
    assert not partial.exists()
    assert not (root / 'rawframes' / 'x').exists()
    # a folder of that name without the marker is not ours
    other = tmp_path / 'other'
    before = user_folder(tmp_path / 'other.partial')
    with pytest.raises(
            RefuseOverwriteError,
            match=r'other\.partial exists and was not made by '
            'this tool'):
        make_shapes_dataset(str(other), **SMALL)
    assert snapshot(tmp_path / 'other.partial') == before
    assert not other.exists()


@pytest.mark.slow
def test_demo_refuses_a_users_folder(tmp_path):
    data = tmp_path / 'data'
    before = user_folder(data)
    proc = subprocess.run([
        sys.executable, 'tools/demo.py', '--data',
        str(data), '--work-dir',
        str(tmp_path / 'work')
    ],
                          cwd=PROJECT_ROOT,
                          capture_output=True,
                          text=True,
                          timeout=300)
    assert proc.returncode == 1
    assert 'Traceback' not in proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith(
        f'RefuseOverwriteError: {data} exists and is not an empty folder')
    assert snapshot(data) == before
