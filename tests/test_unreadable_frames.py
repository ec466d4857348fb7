"""A frame file that cannot be decoded is an error that names the file and
says so, on every decoding path: MMAction2's RawFrameDecode (as the configs
use it), the paired decoder, training episodes, the cached meta-test,
flow extraction, and the one line tools/train.py and tools/test.py print."""
import re
import subprocess
import sys

import cv2
import numpy as np
import pytest
from mmaction.datasets.transforms import RawFrameDecode
from mmaction.registry import TRANSFORMS
from torch.utils.data import DataLoader

from amfir_mm.datasets.episodic_dataset import VideoLoadError
from amfir_mm.datasets.transforms import (CheckedRawFrameDecode,
                                          PairedRawFrameDecode)
from amfir_mm.flow.extraction import run_extraction
from amfir_mm.utils.io import (DataError, UnreadableFrameError, error_line,
                               read_image)
from conftest import PROJECT_ROOT
from test_cached_episode_loops import run_test
from test_distributed import CONFIG
from test_episodic_dataset import episodes

UNDECODABLE = r'unreadable frame {}: it cannot be decoded as an image'


def jpeg_bytes(seed=0, size=16):
    image = np.random.default_rng(seed).integers(
        0, 255, (size, size, 3), dtype=np.uint8)
    return cv2.imencode('.jpg', image)[1].tobytes()


BAD_CONTENT = {
    'garbage': b'not a jpeg',
    'truncated': jpeg_bytes()[:100],
    'empty': b''
}


def names(path):
    """Regex matching the error of an undecodable ``path``."""
    return UNDECODABLE.format(str(path).replace('.', r'\.'))


@pytest.mark.parametrize('kind', sorted(BAD_CONTENT))
def test_read_image_names_the_file(tmp_path, kind):
    good, bad = tmp_path / 'good.jpg', tmp_path / 'bad.jpg'
    good.write_bytes(jpeg_bytes())
    bad.write_bytes(BAD_CONTENT[kind])
    np.testing.assert_array_equal(
        read_image(str(good), channel_order='rgb'),
        cv2.imread(str(good))[..., ::-1])
    with pytest.raises(UnreadableFrameError, match=names(bad)) as info:
        read_image(str(bad))
    assert isinstance(info.value, (OSError, DataError))


def rawframes(folder, num=4, flow=False):
    """``img_%05d.jpg`` (and ``x_``/``y_`` flow) frames in ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(1, num + 1):
        (folder / f'img_{i:05d}.jpg').write_bytes(jpeg_bytes(i))
        if flow and i < num:
            for axis in 'xy':
                gray = np.full((16, 16), 100 + i, np.uint8)
                cv2.imwrite(str(folder / f'{axis}_{i:05d}.jpg'), gray)
    return folder


def results(folder, inds, modality='RGB', tmpl='img_{:05d}.jpg'):
    return dict(
        frame_dir=str(folder),
        filename_tmpl=tmpl,
        modality=modality,
        frame_inds=np.array(inds),
        total_frames=4,
        start_index=1)


def test_registered_raw_frame_decode_names_the_file(tmp_path):
    folder = rawframes(tmp_path / 'v', flow=True)
    decode = TRANSFORMS.build(dict(type='RawFrameDecode'))
    assert isinstance(decode, CheckedRawFrameDecode)
    # readable frames: exactly MMAction2's output
    for modality, tmpl in (('RGB', 'img_{:05d}.jpg'), ('Flow',
                                                       '{}_{:05d}.jpg')):
        ours = decode(results(folder, [1, 2, 2, 3], modality, tmpl))
        theirs = RawFrameDecode()(
            results(folder, [1, 2, 2, 3], modality, tmpl))
        for a, b in zip(ours['imgs'], theirs['imgs']):
            np.testing.assert_array_equal(a, b)
    (folder / 'img_00003.jpg').write_bytes(BAD_CONTENT['truncated'])
    with pytest.raises(
            UnreadableFrameError, match=names(folder / 'img_00003.jpg')):
        decode(results(folder, [1, 3]))
    (folder / 'y_00002.jpg').write_bytes(BAD_CONTENT['garbage'])
    with pytest.raises(
            UnreadableFrameError, match=names(folder / 'y_00002.jpg')):
        decode(results(folder, [1, 2], 'Flow', '{}_{:05d}.jpg'))


def test_paired_decode_names_the_rgb_or_flow_file(tmp_path):
    folder = rawframes(tmp_path / 'v', flow=True)
    decode = PairedRawFrameDecode()
    assert len(decode(results(folder, [1, 4]))['flow']) == 2
    (folder / 'x_00003.jpg').write_bytes(BAD_CONTENT['garbage'])
    with pytest.raises(
            UnreadableFrameError, match=names(folder / 'x_00003.jpg')):
        decode(results(folder, [1, 4]))  # frame 4 pairs with field 3
    (folder / 'img_00001.jpg').write_bytes(BAD_CONTENT['empty'])
    with pytest.raises(
            UnreadableFrameError, match=names(folder / 'img_00001.jpg')):
        decode(results(folder, [1, 2]))


def corrupt_video(frame_dir, kind='garbage'):
    """Make every frame of a video undecodable; returns the regex of the
    error naming one of them."""
    for t in range(1, 5):
        with open(f'{frame_dir}/img_{t:05d}.jpg', 'wb') as f:
            f.write(BAD_CONTENT[kind])
    return UNDECODABLE.format(
        f'{frame_dir}/img_0000[1-4]'.replace('.', r'\.') + r'\.jpg')


def test_training_episode_names_the_file_and_split_line(frame_tree):
    ds = episodes(frame_tree)
    video = ds.draw_episode(0)['support'][0][0]
    regex = corrupt_video(ds.dataset.get_data_info(video)['frame_dir'])
    with pytest.raises(
            VideoLoadError,
            match=r'failed to load video .*train\.txt:\d+: '
            r'UnreadableFrameError: ' + regex):
        ds[0]
    # through a worker process, as training runs: still one line
    loader = DataLoader(ds, batch_size=None, num_workers=1)
    with pytest.raises(VideoLoadError) as info:
        next(iter(loader))
    line = error_line(info.value)
    assert '\n' not in line
    assert line.startswith('VideoLoadError: failed to load video')
    assert re.search(regex, line)


def test_cached_test_loop_names_the_file(frame_tree, tmp_path):
    regex = corrupt_video(f"{frame_tree['root']}/class1/v2", 'truncated')
    runner, _ = run_test(frame_tree, tmp_path / 'work',
                         'CachedEpisodeTestLoop', tmp_path / 'out.pkl')
    with pytest.raises(UnreadableFrameError, match=regex):
        runner.test()


def test_flow_extraction_counts_the_file_as_failed(tmp_path):
    src = tmp_path / 'src'
    rawframes(src / 'walk' / 'good')
    bad = rawframes(src / 'walk' / 'bad')
    (bad / 'img_00003.jpg').write_bytes(BAD_CONTENT['truncated'])
    summary = run_extraction(
        str(src),
        str(tmp_path / 'out'),
        dict(type='DISFlowEstimator'),
        progress=False)
    assert summary.count('done') == 1 and summary.count('failed') == 1
    [failure] = summary.failures
    assert failure.source.rel_out == 'walk/bad'
    assert re.search(names(bad / 'img_00003.jpg'), summary.report())
    assert not (tmp_path / 'out' / 'walk' / 'bad').exists()


@pytest.mark.slow
@pytest.mark.parametrize('tool', ['train', 'test'])
def test_tools_print_one_line_naming_the_file(frame_tree, tmp_path, tool):
    config = tmp_path / 'cfg.py'
    config.write_text(
        CONFIG.format(
            root=PROJECT_ROOT,
            split=frame_tree['split'],
            frames=frame_tree['root']).replace('num_workers=0',
                                               'num_workers=1'))
    for c in range(6):  # whichever video comes first
        for v in range(4):
            regex = corrupt_video(f"{frame_tree['root']}/class{c}/v{v}")
    regex = regex.replace(f'class{c}/v{v}', r'class\d/v\d')
    cmd = [sys.executable, f'tools/{tool}.py', str(config)]
    cmd += ['none'] if tool == 'test' else []
    cmd += ['--work-dir', str(tmp_path / 'work')]
    proc = subprocess.run(
        cmd, cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert 'Traceback' not in proc.stderr, proc.stderr[-3000:]
    last = proc.stderr.strip().splitlines()[-1]
    assert re.search(regex, last), proc.stderr[-3000:]
