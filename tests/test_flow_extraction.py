"""tools/extract_flow.py and amfir_mm.flow.extraction."""
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from amfir_mm.flow.extraction import (DONE_MARKER, PARTIAL_MARKER,
                                      ExtractionOptions, read_done_marker,
                                      run_extraction)
from amfir_mm.flow.sources import discover_sources, read_source_list
from amfir_mm.utils.io import NoVideosFoundError
from amfir_mm.utils.tool import run_tool
from conftest import load_script

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / 'shared'
FIXTURES = SHARED / 'data' / 'fixtures' / 'mmaction2'
FAST = dict(type='DISFlowEstimator', preset='ultrafast')


def moving_frames(num, size=(48, 64), seed=0):
    """``num`` RGB frames of a random texture drifting right 1 px/frame."""
    height, width = size
    noise = np.random.default_rng(seed).integers(
        0, 255, (height, width + num, 3), dtype=np.uint8)
    texture = cv2.GaussianBlur(noise, (0, 0), 1.5)
    return [
        np.ascontiguousarray(texture[:, num - i:num - i + width])
        for i in range(num)
    ]


def write_video(path, num, size=(48, 64)):
    path.parent.mkdir(parents=True, exist_ok=True)
    fourcc = 'MJPG' if path.suffix == '.avi' else 'mp4v'
    writer = cv2.VideoWriter(
        str(path), cv2.VideoWriter_fourcc(*fourcc), 10, (size[1], size[0]))
    for frame in moving_frames(num, size):
        writer.write(frame[..., ::-1].copy())
    writer.release()
    return path


def write_frames(folder, num, name='{:08d}.jpg', size=(48, 64)):
    folder.mkdir(parents=True, exist_ok=True)
    for i, frame in enumerate(moving_frames(num, size), start=1):
        cv2.imwrite(str(folder / name.format(i)), frame[..., ::-1])
    return folder


def files(folder, prefix):
    return sorted(
        p.name for p in Path(folder).iterdir() if p.name.startswith(prefix))


def expected_names(prefix, count):
    return [f'{prefix}{i:05d}.jpg' for i in range(1, count + 1)]


@pytest.fixture
def small_dataset(tmp_path):
    src = tmp_path / 'src'
    write_video(src / 'classA' / 'clip1.mp4', 7)
    write_video(src / 'classB' / 'clip2.avi', 5)
    write_frames(src / 'classB' / 'clip3', 6)
    return src


def test_extracts_generated_clips(small_dataset, tmp_path):
    out = tmp_path / 'out'
    summary = run_extraction(
        str(small_dataset),
        str(out),
        FAST,
        ExtractionOptions(write_rgb=True),
        progress=False)
    assert summary.count('done') == 3 and not summary.failures
    for rel, num in [('classA/clip1', 7), ('classB/clip2', 5),
                     ('classB/clip3', 6)]:
        folder = out / rel
        assert files(folder, 'img_') == expected_names('img_', num)
        assert files(folder, 'x_') == expected_names('x_', num - 1)
        assert files(folder, 'y_') == expected_names('y_', num - 1)
        flow_x = cv2.imread(str(folder / 'x_00001.jpg'), cv2.IMREAD_GRAYSCALE)
        assert flow_x.shape == (48, 64)
        assert read_done_marker(str(folder))['total_frames'] == num
    # The texture drifts +1 px in x: flow-x quantised ~ 128 + 6.4.
    flow_x = cv2.imread(str(out / 'classB/clip3/x_00002.jpg'), 0)
    assert 130 <= np.median(flow_x[8:-8, 8:-8]) <= 139
    ann = (out / 'annotations.txt').read_text().splitlines()
    assert ann == ['classA/clip1 7 0', 'classB/clip2 5 1', 'classB/clip3 6 1']
    assert (out / 'classes.txt').read_text().split() == ['classA', 'classB']
    assert not list(out.rglob('*.partial'))


def test_flow_only_resize_and_list_file(small_dataset, tmp_path):
    list_file = small_dataset / 'list.txt'
    list_file.write_text('classB/clip3 6 4\n# comment\n\nclassA/clip1.mp4 2\n'
                         'classA/gone.mp4 1\n')
    sources = read_source_list(str(list_file))
    assert [(s.rel_out, s.kind, s.label)
            for s in sources] == [('classB/clip3', 'frames', 4),
                                  ('classA/clip1', 'video', 2),
                                  ('classA/gone', 'missing', 1)]
    out = tmp_path / 'out'
    summary = run_extraction(
        str(list_file),
        str(out),
        FAST,
        ExtractionOptions(resize=(40, 30)),
        progress=False)
    assert summary.count('done') == 2
    [failure] = summary.failures
    assert 'gone.mp4' in failure.source.path
    assert failure.error == 'does not exist'
    assert files(out / 'classB/clip3', 'img_') == []
    assert files(out / 'classB/clip3', 'x_') == expected_names('x_', 5)
    assert cv2.imread(str(out / 'classB/clip3/y_00001.jpg')).shape[:2] == \
        (30, 40)
    assert (out / 'annotations.txt').read_text().splitlines() == [
        'classA/clip1 7 2', 'classB/clip3 6 4'
    ]


def test_unreadable_video_is_counted_and_others_finish(small_dataset,
                                                       tmp_path):
    (small_dataset / 'classA' / 'broken.mp4').write_bytes(b'not a video' * 9)
    write_frames(small_dataset / 'classA' / 'single', 1)
    out = tmp_path / 'out'
    summary = run_extraction(
        str(small_dataset), str(out), FAST, progress=False)
    assert summary.count('done') == 3 and summary.count('failed') == 2
    errors = {Path(r.source.path).name: r.error for r in summary.failures}
    assert 'decord' in errors['broken.mp4'] and 'pyav' in errors['broken.mp4']
    assert 'broken.mp4' in errors['broken.mp4']
    assert 'at least 2' in errors['single']
    report = summary.report()
    assert '2 failed' in report and 'broken.mp4' in report
    assert not (out / 'classA' / 'broken').exists()
    assert 'broken' not in (out / 'annotations.txt').read_text()

    tool = load_tool()
    argv = [
        str(small_dataset),
        str(out), '--method', 'dis', '--preset', 'ultrafast', '--no-progress'
    ]
    assert tool.main(argv) == 1
    assert tool.main(argv + ['--allow-failures']) == 0


def test_resume_redoes_only_unfinished(small_dataset, tmp_path):
    out = tmp_path / 'out'
    run_extraction(str(small_dataset), str(out), FAST, progress=False)
    finished = out / 'classA' / 'clip1'
    stamp = os.stat(finished / DONE_MARKER).st_mtime_ns
    # Simulate a killed run: a half-written temp folder (as the extractor
    # leaves it: its start marker and some frames) ...
    (out / 'classB' / 'clip2').rename(out / 'classB' / '.clip2.partial')
    partial = out / 'classB' / '.clip2.partial'
    (partial / DONE_MARKER).unlink()
    (partial / 'x_00003.jpg').unlink()
    (partial / PARTIAL_MARKER).write_text('{}')
    # ... and one removed before its final marker was written: an empty
    # temp folder.
    shutil.rmtree(out / 'classB' / 'clip3')
    (out / 'classB' / '.clip3.partial').mkdir()
    summary = run_extraction(
        str(small_dataset), str(out), FAST, progress=False)
    status = {r.source.rel_out: r.status for r in summary.results}
    assert status == {
        'classA/clip1': 'skipped',
        'classB/clip2': 'done',
        'classB/clip3': 'done'
    }
    assert os.stat(finished / DONE_MARKER).st_mtime_ns == stamp
    assert files(out / 'classB' / 'clip2', 'x_') == expected_names('x_', 4)
    assert files(out / 'classB' / 'clip3', 'x_') == expected_names('x_', 5)
    assert not list(out.rglob('*.partial'))
    assert not list(out.rglob(PARTIAL_MARKER))
    # Other settings invalidate finished videos.
    again = run_extraction(
        str(small_dataset),
        str(out),
        FAST,
        ExtractionOptions(bound=10),
        progress=False)
    assert again.count('done') == 3


@pytest.mark.parametrize('overwrite', [False, True])
def test_never_deletes_what_it_did_not_write(small_dataset, tmp_path,
                                             overwrite):
    out = tmp_path / 'out'
    # A user's folder where clip1's output goes, and a hidden '.partial'
    # folder of someone else's where clip2's temp folder goes: no marker.
    mine = out / 'classA' / 'clip1'
    mine.mkdir(parents=True)
    (mine / 'notes.txt').write_text('keep me\n')
    theirs = out / 'classB' / '.clip2.partial'
    theirs.mkdir(parents=True)
    (theirs / 'x_00001.jpg').write_bytes(b'not ours')
    summary = run_extraction(
        str(small_dataset),
        str(out),
        FAST,
        progress=False,
        overwrite=overwrite)
    status = {r.source.rel_out: r.status for r in summary.results}
    assert status == {
        'classA/clip1': 'failed',
        'classB/clip2': 'failed',
        'classB/clip3': 'done'
    }
    assert summary.count('failed') == 2
    errors = {r.source.rel_out: r.error for r in summary.failures}
    for rel_out, folder in (('classA/clip1', mine), ('classB/clip2', theirs)):
        assert str(folder) in errors[rel_out]
        assert 'not written by the extractor' in errors[rel_out]
    for result in summary.failures:
        assert f'FAILED {result.source.path}: {result.error}' in \
            summary.report()
    assert sorted(p.name for p in mine.iterdir()) == ['notes.txt']
    assert (mine / 'notes.txt').read_text() == 'keep me\n'
    assert sorted(p.name for p in theirs.iterdir()) == ['x_00001.jpg']
    assert (theirs / 'x_00001.jpg').read_bytes() == b'not ours'
    assert not (out / 'classB' / 'clip2').exists()


def finished_markers(out):
    """Completion markers of renamed (final) folders, not temp ones."""
    return {
        p.parent.name: os.stat(p).st_mtime_ns
        for p in out.rglob(DONE_MARKER) if not p.parent.name.startswith('.')
    }


def _children(pid):
    path = Path(f'/proc/{pid}/task/{pid}/children')
    return [int(c) for c in path.read_text().split()] if path.exists() else []


def _pool_workers(pid):
    """Worker processes of the tool: children of its fork server."""
    return [worker for child in _children(pid) for worker in _children(child)]


@pytest.mark.slow
def test_resume_after_worker_killed(tmp_path):
    src = tmp_path / 'src'
    for i in range(6):
        write_video(src / 'cls' / f'v{i}.avi', 24, size=(120, 160))
    out = tmp_path / 'out'
    cmd = [
        sys.executable,
        str(ROOT / 'tools' / 'extract_flow.py'),
        str(src),
        str(out), '--method', 'farneback', '--workers', '2', '--no-progress'
    ]
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 60
        while not out.is_dir() or not finished_markers(out):
            assert proc.poll() is None, proc.stdout.read()
            assert time.monotonic() < deadline
            time.sleep(0.01)
        workers = _pool_workers(proc.pid)
        assert workers, 'no worker process found'
        os.kill(workers[0], signal.SIGKILL)
        output, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    finished = finished_markers(out)
    assert 1 <= len(finished)
    if len(finished) < 6:  # the kill landed mid-run (the usual case)
        assert proc.returncode == 1
        assert 'worker process died' in output
    summary = run_extraction(str(src), str(out), 'farneback', progress=False)
    status = {Path(r.source.rel_out).name: r.status for r in summary.results}
    assert {n for n, s in status.items() if s == 'skipped'} == set(finished)
    assert not summary.failures
    for name, stamp in finished.items():
        assert os.stat(out / 'cls' / name / DONE_MARKER).st_mtime_ns == stamp
    assert not list(out.rglob('*.partial'))
    for i in range(6):
        assert files(out / 'cls' / f'v{i}', 'x_') == expected_names('x_', 23)


@pytest.mark.slow
def test_two_workers_match_one(small_dataset, tmp_path):
    one = run_extraction(
        str(small_dataset), str(tmp_path / 'one'), FAST, progress=False)
    two = run_extraction(
        str(small_dataset),
        str(tmp_path / 'two'),
        FAST,
        workers=2,
        progress=False)
    assert [r.status for r in two.results] == ['done'] * 3
    assert [r.total_frames for r in one.results] == \
        [r.total_frames for r in two.results]
    for result in one.results:
        rel = result.source.rel_out
        a = cv2.imread(str(tmp_path / 'one' / rel / 'x_00002.jpg'))
        b = cv2.imread(str(tmp_path / 'two' / rel / 'x_00002.jpg'))
        np.testing.assert_array_equal(a, b)


def test_discovery_names_colliding_videos_by_full_name(tmp_path):
    write_video(tmp_path / 'a.mp4', 3)
    write_video(tmp_path / 'a.avi', 3)
    write_video(tmp_path / 'b.mp4', 3)
    (tmp_path / '.hidden').mkdir()
    write_video(tmp_path / '.hidden' / 'c.mp4', 3)
    names = [s.rel_out for s in discover_sources(str(tmp_path))]
    assert names == ['a.avi', 'a.mp4', 'b']


@pytest.mark.skipif(not FIXTURES.is_dir(), reason='no shared fixtures')
def test_extracts_mmaction2_fixtures(tmp_path):
    out = tmp_path / 'out'
    summary = run_extraction(
        str(FIXTURES),
        str(out),
        FAST,
        ExtractionOptions(write_rgb=True, short_side=48),
        workers=2,
        progress=False)
    assert not summary.failures
    # test.mp4 and test.avi share a stem, so they keep their extension.
    expected = {'demo': 280, 'imgs': 10, 'test.avi': 164, 'test.mp4': 300}
    assert {
        r.source.rel_out: r.total_frames
        for r in summary.results
    } == expected
    for rel, num in expected.items():
        assert len(files(out / rel, 'img_')) == num
        assert files(out / rel, 'x_') == expected_names('x_', num - 1)
        assert files(out / rel, 'y_') == expected_names('y_', num - 1)
        assert min(cv2.imread(str(out / rel / 'img_00001.jpg')).shape[:2]) \
            == 48
    # The imgs folder: only img_*.jpg are frames; its x_/y_ are ignored.
    assert (out / 'annotations.txt').read_text().splitlines() == [
        'demo 280 -1', 'imgs 10 -1', 'test.avi 164 -1', 'test.mp4 300 -1'
    ]


def load_tool():
    return load_script('tools/extract_flow.py', 'extract_flow_tool')


def test_refuses_to_overwrite_sources(small_dataset):
    with pytest.raises(ValueError, match='must not be SRC'):
        run_extraction(
            str(small_dataset), str(small_dataset), FAST, progress=False)
    # A frame folder whose output folder would be itself fails alone.
    frames = small_dataset / 'classB' / 'clip3'
    before = sorted(p.name for p in frames.iterdir())
    [result] = run_extraction(
        '',
        str(small_dataset),
        FAST,
        progress=False,
        sources=read_source_list_for(frames, small_dataset)).results
    assert result.status == 'failed' and 'would replace' in result.error
    assert sorted(p.name for p in frames.iterdir()) == before


def read_source_list_for(folder, root):
    list_file = root / 'one.txt'
    list_file.write_text(str(folder.relative_to(root)) + '\n')
    return read_source_list(str(list_file))


def test_follows_symlinked_split_and_skips_loops(tmp_path):
    """A split assembled from a linked class folder and linked video
    folders is found and extracted; a symlink loop is skipped, not
    followed for ever."""
    data = tmp_path / 'data'
    write_frames(data / 'walk' / 'v1', 3)
    write_frames(data / 'walk' / 'v2', 3)
    write_video(data / 'jump' / 'c1.mp4', 4)
    split = tmp_path / 'split'
    (split / 'run').mkdir(parents=True)
    (split / 'jump').symlink_to(data / 'jump', target_is_directory=True)
    (split / 'run' / 'r1').symlink_to(
        data / 'walk' / 'v1', target_is_directory=True)
    (split / 'run' / 'r2').symlink_to(
        data / 'walk' / 'v2', target_is_directory=True)
    (split / 'run' / 'loop').symlink_to(split, target_is_directory=True)
    sources = discover_sources(str(split))
    assert [(s.rel_out, s.kind) for s in sources] == [('jump/c1', 'video'),
                                                      ('run/r1', 'frames'),
                                                      ('run/r2', 'frames')]
    out = tmp_path / 'out'
    summary = run_extraction(str(split), str(out), FAST, progress=False)
    assert summary.count('done') == 3 and not summary.failures
    assert files(out / 'run' / 'r2', 'x_') == expected_names('x_', 2)
    assert files(out / 'jump' / 'c1', 'x_') == expected_names('x_', 3)


def test_no_videos_is_an_error_on_every_path(tmp_path, capsys):
    empty = tmp_path / 'empty'
    (empty / 'classA' / '.clip1.partial').mkdir(parents=True)
    (empty / 'classA' / 'notes.txt').write_text('no videos here\n')
    out = tmp_path / 'out'
    regex = r'no videos or frame folders found in .*empty'
    with pytest.raises(NoVideosFoundError, match=regex):
        discover_sources(str(empty))
    with pytest.raises(NoVideosFoundError, match=regex):
        run_extraction(str(empty), str(out), FAST, progress=False)
    with pytest.raises(NoVideosFoundError, match='no videos or frame'):
        run_extraction('', str(out), FAST, progress=False, sources=[])
    listing = tmp_path / 'list.txt'
    listing.write_text('# nothing\n\n')
    with pytest.raises(NoVideosFoundError, match=r'list\.txt: no videos'):
        read_source_list(str(listing))
    assert run_tool(load_tool().main, 'extract_flow',
                    [str(empty), str(out), '--method', 'dis']) == 1
    err = capsys.readouterr().err.strip()
    assert re.fullmatch('NoVideosFoundError: ' + regex + r' \(.*\)', err)
    assert not out.exists()
