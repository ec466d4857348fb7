"""Few-shot split lists and frame folders: parsing and clear errors."""
from pathlib import Path

import pytest

from amfir_mm.datasets import (SplitFormatError, count_frames, read_split_file,
                               scan_class_folders)
from amfir_mm.utils.io import NoVideosFoundError

# (file, classes, lines) of the public split lists in ../shared/data/splits
PUBLIC_SPLITS = [('ssv2_OTAM/train.txt', 64), ('ssv2_OTAM/val.txt', 12),
                 ('ssv2_OTAM/test.txt', 24), ('ssv2_CMN/train.txt', 64),
                 ('ssv2_CMN/test.txt', 24), ('kinetics_CMN/train.txt', 64),
                 ('kinetics_CMN/test.txt', 24), ('hmdb_ARN/train.txt', 31),
                 ('hmdb_ARN/test.txt', 10), ('ucf_ARN/train.txt', 70),
                 ('ucf_ARN/test.txt', 21)]


@pytest.mark.parametrize('name,num_classes', PUBLIC_SPLITS)
def test_public_split_lists(shared_data, name, num_classes):
    entries = read_split_file(str(shared_data / 'splits' / name))
    assert len({e.class_name for e in entries}) == num_classes
    assert all(e.video_id and '/' not in e.video_id for e in entries)
    assert entries[0].line_no >= 1


def test_kinetics_class_names_keep_spaces(shared_data):
    entries = read_split_file(
        str(shared_data / 'splits' / 'kinetics_CMN' / 'train.txt'))
    assert any(' ' in e.class_name for e in entries)
    # CMN: 100 videos per class
    counts = {}
    for e in entries:
        counts[e.class_name] = counts.get(e.class_name, 0) + 1
    assert set(counts.values()) == {100}


def test_malformed_line_names_file_and_line(tmp_path):
    split = tmp_path / 'bad.txt'
    split.write_text('walk/v1\n\nwalk/v2\nno_slash_here\n')
    with pytest.raises(SplitFormatError, match=r'bad\.txt:4'):
        read_split_file(str(split))


def test_missing_split_file_says_data_not_found(tmp_path):
    with pytest.raises(FileNotFoundError, match='data not found at'):
        read_split_file(str(tmp_path / 'absent.txt'))


def test_scan_class_folders(frame_tree):
    entries = scan_class_folders(frame_tree['root'])
    assert [e.rel_dir for e in entries] == frame_tree['lines']


def test_count_frames_and_gaps(frame_tree, tmp_path):
    video = f"{frame_tree['root']}/class0/v0"
    assert count_frames(video, 'img_{:05d}.jpg') == 4
    (tmp_path / 'frames/class0/v0/img_00002.jpg').unlink()
    with pytest.raises(
            FileNotFoundError,
            match=r'missing frames \[2\].*'
            r'listed at x\.txt:7'):
        count_frames(video, 'img_{:05d}.jpg', where='x.txt:7')
    with pytest.raises(FileNotFoundError, match='no frames named like'):
        count_frames(video, '{:08d}.jpg')
    with pytest.raises(FileNotFoundError, match='frame folder missing'):
        count_frames(video + 'x', 'img_{:05d}.jpg')


def test_ssv2_mini_layout(shared_data):
    entries = scan_class_folders(str(shared_data / 'ssv2_mini' / 'train'))
    assert len(entries) == 50
    assert len({e.class_name for e in entries}) == 5
    video = shared_data / 'ssv2_mini' / 'train' / entries[0].rel_dir
    assert count_frames(str(video), '{:08d}.jpg') == 8


def test_scan_skips_hidden_entries(frame_tree):
    """The flow extractor's ``.<video>.partial`` folders and ``.DS_Store``
    style entries are not videos (nor classes)."""
    root = Path(frame_tree['root'])
    (root / 'class0' / '.v9.partial').mkdir()
    (root / 'class0' / '.DS_Store').write_bytes(b'\0')
    (root / '.hidden_class' / 'v0').mkdir(parents=True)
    (root / '.DS_Store').write_bytes(b'\0')
    entries = scan_class_folders(str(root))
    assert [e.rel_dir for e in entries] == frame_tree['lines']


def linked_split(frame_tree, tmp_path):
    """A split assembled from links: class0 linked whole, class1 a real
    folder of linked videos (named w0, w1)."""
    root, split = Path(frame_tree['root']), tmp_path / 'linked'
    split.mkdir()
    (split / 'class0').symlink_to(root / 'class0', target_is_directory=True)
    (split / 'class1').mkdir()
    for v in range(2):
        (split / 'class1' / f'w{v}').symlink_to(
            root / 'class1' / f'v{v}', target_is_directory=True)
    return split


def test_scan_follows_symlinked_classes_and_videos(frame_tree, tmp_path):
    split = linked_split(frame_tree, tmp_path)
    assert [e.rel_dir for e in scan_class_folders(str(split))] == [
        'class0/v0', 'class0/v1', 'class0/v2', 'class0/v3', 'class1/w0',
        'class1/w1'
    ]
    assert count_frames(str(split / 'class1' / 'w1'), 'img_{:05d}.jpg') == 4
    # a loop (a video folder linking to its class) is listed once, no hang
    (split / 'class1' / 'loop').symlink_to(split / 'class1')
    assert 'class1/loop' in [e.rel_dir for e in scan_class_folders(str(split))]
    # a broken link is an error naming it
    (split / 'class1' / 'gone').symlink_to(tmp_path / 'nowhere')
    with pytest.raises(
            FileNotFoundError, match=r'class1/gone is a broken symbolic link'):
        scan_class_folders(str(split))


def test_no_videos_is_an_error_naming_the_folder(tmp_path):
    (tmp_path / 'empty' / 'class0').mkdir(parents=True)
    (tmp_path / 'empty' / 'class0' / '.v0.partial').mkdir()
    with pytest.raises(
            NoVideosFoundError,
            match=r'no <class>/<video>/ folders found under '
            r'.*empty$'):
        scan_class_folders(str(tmp_path / 'empty'))
