"""MMAction2's ``RawFrameDecode`` with an unreadable frame as a clear error.

For a corrupt or truncated JPEG, MMAction2's ``RawFrameDecode`` (through
``mmcv.imfrombytes``) fails inside OpenCV (``cv2.error ... !_src.empty() in
function 'cvtColor'``) without naming the file, or, for flow frames,
returns an object array that fails later.  :class:`CheckedRawFrameDecode`
runs MMAction2's decoder unchanged and, when it fails or returns something
that is not an image, finds the frame file that cannot be decoded and
raises :class:`~amfir_mm.utils.io.UnreadableFrameError` naming it.

It is registered under MMAction2's own name ``RawFrameDecode`` (``force``)
as well as ``CheckedRawFrameDecode``, so every config's
``dict(type='RawFrameDecode')`` gets it once ``amfir_mm`` is imported;
decoded frames are exactly MMAction2's.
"""
import os.path as osp

import numpy as np
from mmaction.datasets.transforms import RawFrameDecode
from mmaction.registry import TRANSFORMS

from ...utils.io import UnreadableFrameError, decode_image

__all__ = ['CheckedRawFrameDecode']


@TRANSFORMS.register_module(
    name=['RawFrameDecode', 'CheckedRawFrameDecode'], force=True)
class CheckedRawFrameDecode(RawFrameDecode):
    """MMAction2's ``RawFrameDecode``; an undecodable frame file is an
    :class:`~amfir_mm.utils.io.UnreadableFrameError` naming the file.

    Keys and arguments as MMAction2's ``RawFrameDecode``: ``imgs`` is a list
    of ``(H, W, 3)`` uint8 RGB frames (``modality='RGB'``) or ``(H, W, 2)``
    uint8 x/y flow frames (``modality='Flow'``). Costs nothing extra on
    readable frames: the files are only re-checked after a failure.
    """

    def transform(self, results: dict) -> dict:
        try:
            results = super().transform(results)
        except FileNotFoundError:
            raise
        except Exception:  # cv2.error, ValueError from np.stack, ...
            self._raise_unreadable(results)
            raise
        channels = 2 if results['modality'] == 'Flow' else 3
        if not all(
                isinstance(f, np.ndarray) and f.dtype == np.uint8
                and f.ndim == 3 and f.shape[2] == channels
                for f in results['imgs']):
            self._raise_unreadable(results)
            raise UnreadableFrameError(
                f'unreadable {results["modality"]} frames in '
                f'{results["frame_dir"]} (indices '
                f'{np.asarray(results["frame_inds"]).tolist()}): they '
                'decode to something that is not an image')
        return results

    def frame_files(self, results: dict) -> list:
        """``(path, flag)`` of every file the sample reads, in order."""
        directory, tmpl = results['frame_dir'], results['filename_tmpl']
        offset = results.get('offset', 0)
        files = []
        for index in np.asarray(results['frame_inds']).reshape(-1):
            index = int(index) + offset
            if results['modality'] == 'Flow':
                files += [(osp.join(directory,
                                    tmpl.format(axis, index)), 'grayscale')
                          for axis in 'xy']
            else:
                files.append((osp.join(directory,
                                       tmpl.format(index)), 'color'))
        return files

    def _raise_unreadable(self, results: dict) -> None:
        """Decode each file of the sample; raise for the first that fails
        (returns if all decode)."""
        if self.file_client is None:
            return
        for path, flag in dict.fromkeys(self.frame_files(results)):
            decode_image(self.file_client.get(path), path, flag)
