"""MMAction2 rawframe annotation lists for extracted videos.

Each line is ``frame_dir total_frames label`` (what MMAction2's
``RawframeDataset`` reads), with ``frame_dir`` relative to the output root
and ``total_frames`` the number of RGB frames of the source (the folder
holds ``total_frames - 1`` flow fields ``x_/y_%05d.jpg``; the paired
transforms of :mod:`amfir_mm.datasets.transforms.paired` expect exactly
this).

Labels: a label given by a list file wins; otherwise the index of the
video's parent folder name (its class) among the sorted parent folder names
of all discovered sources, e.g. ``train/train3/1561`` -> index of
``train3``. Sources at the top of the output (no parent folder) get ``-1``.
``labels=False`` writes ``frame_dir total_frames`` only. ``classes.txt``
next to the list gives the class name of each label.

When every ``frame_dir`` has at least three parts (``split/class/video``,
e.g. ssv2_mini's ``train/...`` and ``val/...``) and there are several
splits, one list per split is written as well (``annotations_<split>.txt``).
Only finished (extracted or skipped) videos are listed; failures are not.
MMAction2 list files are whitespace separated, so paths containing spaces
are written but cannot be parsed back; such entries are counted in a
warning.
"""
import os.path as osp
import warnings
from typing import Dict, List


def class_labels(sources) -> Dict[str, int]:
    """Parent folder name -> label, in sorted order."""
    names = sorted({s.class_name for s in sources if s.class_name})
    return {name: i for i, name in enumerate(names)}


def write_annotations(results,
                      out_root: str,
                      ann_file: str,
                      labels: bool = True) -> List[str]:
    """Write the list(s) for the finished videos of ``results``.

    Args:
        results (list[VideoResult]): All results of a run.
        out_root (str): The output root (``frame_dir`` is relative to it).
        ann_file (str): Path of the main list.
        labels (bool): Write the label column.

    Returns:
        list[str]: The files written.
    """
    class_to_label = class_labels([r.source for r in results])
    lines = []
    for result in sorted(results, key=lambda r: r.source.rel_out):
        if result.status not in ('done', 'skipped'):
            continue
        source = result.source
        line = f'{source.rel_out} {result.total_frames}'
        if labels:
            label = source.label if source.label is not None else \
                class_to_label.get(source.class_name, -1)
            line += f' {label}'
        lines.append(line)
    with_spaces = sum(
        len(line.split()) != (3 if labels else 2) for line in lines)
    if with_spaces:
        warnings.warn(f'{with_spaces} frame_dir(s) in {ann_file} contain '
                      'whitespace; MMAction2 cannot parse those lines')

    written = [_write_lines(ann_file, lines)]
    splits = sorted({line.split('/', 1)[0] for line in lines})
    if len(splits) > 1 and all(
            len(line.split()[0].split('/')) >= 3 for line in lines):
        stem, ext = osp.splitext(ann_file)
        for split in splits:
            written.append(
                _write_lines(
                    f'{stem}_{split}{ext or ".txt"}',
                    [ln for ln in lines if ln.split('/', 1)[0] == split]))
    if labels and class_to_label:
        written.append(
            _write_lines(
                osp.join(osp.dirname(ann_file) or '.', 'classes.txt'),
                list(class_to_label)))
    return written


def _write_lines(path: str, lines: List[str]) -> str:
    with open(path, 'w', encoding='utf-8') as f:
        f.writelines(line + '\n' for line in lines)
    return path
