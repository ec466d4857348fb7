"""A rawframe dataset read from a few-shot split list or a class-folder
tree."""
import os.path as osp
from typing import Callable, List, Union

from mmaction.datasets import BaseActionDataset
from mmaction.registry import DATASETS
from mmengine.logging import MMLogger

from .split_reader import (class_index, count_frames, read_split_file,
                           scan_class_folders)


@DATASETS.register_module()
class FewShotRawframeDataset(BaseActionDataset):
    """Videos stored as frame folders ``<root>/<class>/<video_id>/``.

    The videos come from a split list (``ann_file``, lines
    ``<class>/<video_id>``, see :func:`read_split_file`) or, with
    ``ann_file=''``, from every ``<class>/<video>/`` folder under the root.
    Labels are the class names' positions in sorted order.  Each data info
    has the keys MMAction2's ``RawframeDataset`` produces (``frame_dir``,
    ``total_frames``, ``filename_tmpl``, ``label``, ``start_index``,
    ``modality``), so MMAction2's ``SampleFrames`` / ``RawFrameDecode``
    pipelines apply unchanged.

    Args:
        ann_file (str): split list, or ``''`` to scan ``data_prefix['img']``.
        pipeline (list): per-video transforms.
        data_prefix (dict): ``dict(img=<root of class folders>)``.
        filename_tmpl (str): frame file names, e.g. ``'img_{:05d}.jpg'``
            (MMAction2) or ``'{:08d}.jpg'`` (the ssv2_mini layout).
        start_index (int): number of the first frame. Defaults to 1.
        skip_invalid (bool): drop videos whose folder is missing or whose
            frames are missing / not consecutive, and log how many were
            dropped.  By default such a video is an error naming the split
            file and line.
        min_frames (int): videos with fewer frames are invalid. Defaults to 1.
    """

    def __init__(self,
                 ann_file: str,
                 pipeline: List[Union[dict, Callable]],
                 data_prefix: dict = dict(img=''),
                 filename_tmpl: str = 'img_{:05d}.jpg',
                 start_index: int = 1,
                 skip_invalid: bool = False,
                 min_frames: int = 1,
                 **kwargs) -> None:
        self.filename_tmpl = filename_tmpl
        self.skip_invalid = skip_invalid
        self.min_frames = min_frames
        self.num_skipped = 0
        super().__init__(
            ann_file,
            pipeline=pipeline,
            data_prefix=data_prefix,
            start_index=start_index,
            **kwargs)

    def load_data_list(self) -> List[dict]:
        root = self.data_prefix.get('img', '')
        if self.ann_file:
            entries = read_split_file(self.ann_file)
        else:
            entries = scan_class_folders(root)
        labels = class_index(entries)
        self._metainfo['classes'] = tuple(sorted(labels, key=labels.get))
        data_list, problems = [], []
        for entry in entries:
            where = (f'{self.ann_file}:{entry.line_no}'
                     if self.ann_file else None)
            frame_dir = osp.join(root, entry.rel_dir)
            try:
                total = count_frames(frame_dir, self.filename_tmpl,
                                     self.start_index, where)
                if total < self.min_frames:
                    raise FileNotFoundError(
                        f'{frame_dir} has {total} frames, fewer than '
                        f'min_frames={self.min_frames}' +
                        (f' (listed at {where})' if where else ''))
            except FileNotFoundError as err:
                if not self.skip_invalid:
                    raise
                problems.append(str(err))
                continue
            data_list.append(
                dict(
                    frame_dir=frame_dir,
                    total_frames=total,
                    filename_tmpl=self.filename_tmpl,
                    label=labels[entry.class_name],
                    video_id=entry.rel_dir,
                    source=where or frame_dir))
        self.num_skipped = len(problems)
        if problems:
            logger = MMLogger.get_current_instance()
            logger.warning(
                f'{type(self).__name__}: skipped {len(problems)} of '
                f'{len(entries)} videos (skip_invalid=True); first: '
                f'{problems[0]}')
        return data_list
