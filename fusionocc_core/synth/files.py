"""Byte-reproducible writers for the dataset's files (same seed -> identical bytes)."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import numpy as np
from PIL import Image


def write_json(path: Path, records: list[dict]) -> None:
    """Writes one nuScenes table."""
    path.write_text(json.dumps(records, indent=0, separators=(",", ":")))


def write_jpeg(path: Path, rgb: np.ndarray, *, quality: int) -> None:
    """Writes an RGB uint8 image as JPEG."""
    Image.fromarray(rgb).save(path, format="JPEG", quality=quality)


def write_npz(path: Path, **arrays: np.ndarray) -> None:
    """Like `np.savez_compressed`, but with fixed zip timestamps so the bytes depend on the arrays only."""
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, array in arrays.items():
            buffer = io.BytesIO()
            np.lib.format.write_array(buffer, np.ascontiguousarray(array), allow_pickle=False)
            info = zipfile.ZipInfo(name + ".npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, buffer.getvalue())
