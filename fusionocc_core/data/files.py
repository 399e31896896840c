"""Validated readers of the dataset files every command reads, and the fix that applies to each.

One module decides what a damaged file is, so `fusionocc check-data` reports exactly what `prepare`, `train`,
`eval`, `adjust-logits`, `convert` and `render` refuse: a `.pcd.bin` that is not a whole number of 5 x float32
points, a lidarseg file whose label count differs from its sweep's point count, an image PIL cannot identify
(or decode, when decoded) or of another size than its sample_data record, an Occ3D `labels.npz` without its
(200, 200, 16) arrays, a non-finite pose, a table that is not JSON. Each `*_problem` function returns a short
description (None when the file is fine); each `read_*` function raises `DataFileError` with the path, the
problem and the fix. Commands turn it into their own error type (DatasetError, SourceError, ...) and print
it as one line.
"""

from __future__ import annotations

import json
import math
import zipfile
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from fusionocc_core.errors import FusionOccError
from fusionocc_core.occ3d import GRID_SHAPE, NUM_CLASSES

POINT_COLUMNS = 5  # x, y, z, intensity, ring
POINT_BYTES = 4 * POINT_COLUMNS  # float32 each
OCC_ARRAYS = ("semantics", "mask_lidar", "mask_camera")
SYNTH_MARKER = "SYNTH_COMPLETE"  # fusionocc_core.synth.generate.COMPLETE_MARKER (not imported: heavy module)
_ROOT_PARTS = ("samples", "sweeps", "lidarseg", "gts")


class DataFileError(FusionOccError, ValueError):
    """A file of the dataset is missing or damaged.

    Attributes:
        path: the file at fault.
        problem: what is wrong with it.
        fix: what repairs it (may be empty).
    """

    def __init__(self, path: Path | str, problem: str, fix: str = "") -> None:
        self.path, self.problem, self.fix = Path(path), problem, fix
        super().__init__(f"{self.path}: {problem}" + (f"; {fix}" if fix else ""))

    def __reduce__(self) -> tuple[Any, ...]:
        # Raised in `prepare --workers` pool processes: pickle the fields, not the formatted message.
        return (type(self), (self.path, self.problem, self.fix))


def dataroot_of(path: Path) -> Path | None:
    """The dataroot a dataset file lies in (the parent of samples/, sweeps/, lidarseg/, gts/ or v1.0-*/)."""
    parts = Path(path).parts
    # The innermost data folder first (lidarseg/v1.0-mini/x.bin lies in lidarseg/, not in a v1.0-* folder).
    for is_root in (lambda part: part in _ROOT_PARTS, lambda part: part.startswith("v1.0-")):
        for i in range(len(parts) - 1, 0, -1):
            if is_root(parts[i]):
                return Path(*parts[:i])
    return None


def fix_for(path: Path | str) -> str:
    """What repairs a missing or damaged dataset file, by the archive it comes from."""
    path = Path(path)
    root = dataroot_of(path)
    where = f" into {root}" if root is not None else ""
    if root is not None and (root / SYNTH_MARKER).is_file():
        # The synthetic world has no archives: regenerating it with the options it was made with restores it.
        return (f"this is a synthetic world: regenerate it with `fusionocc synth` and the options listed in "
                f"{root / SYNTH_MARKER}")
    parts = path.parts
    if "gts" in parts:
        return f"re-extract Occ3D-nuScenes gts.tar.gz{where}"
    if "lidarseg" in parts or path.name in ("lidarseg.json", "category.json"):
        return f"re-extract the nuScenes-lidarseg archive (lidarseg/ and lidarseg.json){where}"
    if path.suffix == ".json":
        return f"re-extract the nuScenes metadata archive (v1.0-*_meta.tgz or v1.0-mini.tgz){where}"
    if "samples" in parts or "sweeps" in parts:
        return f"re-extract it from the nuScenes blobs archive that holds it (v1.0-*_blobs.tgz){where}"
    return "restore the file"


def _size(path: Path) -> int | None:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return None


# -- lidar ---------------------------------------------------------------------------------------------------


def points_problem(path: Path) -> str | None:
    """Problem of a nuScenes `.pcd.bin` judged by its size (whole 20-byte points), None when fine."""
    size = _size(path)
    if size is None:
        return "missing"
    if size == 0:
        return "empty (0 bytes)"
    if size % POINT_BYTES:
        # np.fromfile would silently drop the tail (or a reshape fail), so the size alone decides.
        return (
            f"{size:,} bytes is not a whole number of {POINT_BYTES}-byte points (x, y, z, intensity, ring "
            f"as float32): {size // POINT_BYTES:,} points and {size % POINT_BYTES} stray bytes, the file is "
            f"damaged"
        )
    return None


def point_count(path: Path) -> int:
    """Number of points of a `.pcd.bin` whose size is valid (see `points_problem`)."""
    return Path(path).stat().st_size // POINT_BYTES


def read_points(path: Path | str) -> np.ndarray:
    """(N, 5) float32 x, y, z, intensity, ring of a `.pcd.bin`.

    Raises:
        DataFileError: missing, unreadable or not a whole number of points.
    """
    path = Path(path)
    problem = points_problem(path)
    if problem is not None:
        raise DataFileError(path, problem, fix_for(path))
    try:
        raw = np.fromfile(path, dtype="<f4")
    except OSError as error:
        raise DataFileError(path, f"cannot be read ({error.strerror or error})", fix_for(path)) from None
    return raw.reshape(-1, POINT_COLUMNS)


def lidarseg_problem(path: Path, num_points: int, points_path: Path | None = None) -> str | None:
    """Problem of a lidarseg `.bin` (one uint8 label per point of its sweep), None when fine."""
    size = _size(path)
    if size is None:
        return "missing"
    if size != num_points:
        of = f" of {Path(points_path).name}" if points_path is not None else ""
        return f"{size:,} labels for the {num_points:,} points{of}: the label file is damaged"
    return None


def read_lidarseg(path: Path | str, num_points: int, points_path: Path | None = None) -> np.ndarray:
    """(N,) uint8 lidarseg labels, checked against the point count of their sweep.

    Raises:
        DataFileError: missing, unreadable or of another length than the sweep.
    """
    path = Path(path)
    problem = lidarseg_problem(path, num_points, points_path)
    if problem is not None:
        raise DataFileError(path, problem, fix_for(path))
    try:
        return np.fromfile(path, dtype=np.uint8)
    except OSError as error:
        raise DataFileError(path, f"cannot be read ({error.strerror or error})", fix_for(path)) from None


# -- images --------------------------------------------------------------------------------------------------


def image_problem(path: Path, *, size: tuple[int, int] | None = None, decode: bool = False,
                  jpeg: bool = True) -> str | None:
    """Problem of a camera image, None when fine.

    Args:
        path: the image.
        size: (width, height) its sample_data record states; None to accept any size.
        decode: decode the pixels too (finds a file cut short; the header alone does not).
        jpeg: require JPEG (every nuScenes camera file is one).
    """
    from PIL import Image, UnidentifiedImageError

    if not path.is_file():
        return "missing"
    try:
        with Image.open(path) as image:
            if jpeg and image.format != "JPEG":
                return f"not a JPEG image (PIL reads it as {image.format})"
            if size is not None and image.size != tuple(size):
                return (f"is {image.size[0]}x{image.size[1]} px, its sample_data record says "
                        f"{size[0]}x{size[1]}")
            if decode:
                image.load()
    except UnidentifiedImageError:
        return "not a readable image (PIL cannot identify its format)"
    except (OSError, SyntaxError, ValueError) as error:
        return f"damaged image data ({error})"
    return None


def read_image(path: Path | str, *, size: tuple[int, int] | None = None, jpeg: bool = True) -> np.ndarray:
    """(H, W, 3) uint8 RGB pixels of an image, its size checked against `size` (width, height) when given.

    Raises:
        DataFileError: missing, not an image (or not a JPEG with `jpeg`), damaged or of another size.
    """
    from PIL import Image

    path = Path(path)
    problem = image_problem(path, size=size, jpeg=jpeg)
    if problem is None:
        try:
            with Image.open(path) as image:
                return np.asarray(image.convert("RGB"))
        except (OSError, SyntaxError, ValueError) as error:
            problem = f"damaged image data ({error})"
    raise DataFileError(path, problem, fix_for(path))


# -- Occ3D ground truth ------------------------------------------------------------------------------------


def occ_problem(path: Path, keys: Sequence[str] = OCC_ARRAYS) -> str | None:
    """Problem of an Occ3D `labels.npz` (the arrays `keys`, each (200, 200, 16) uint8, labels 0..17)."""
    try:
        read_occ(path, keys)
    except DataFileError as error:
        return error.problem
    return None


def read_occ(path: Path | str, keys: Sequence[str] = OCC_ARRAYS) -> dict[str, np.ndarray]:
    """The arrays `keys` of an Occ3D `labels.npz`, each checked to be (200, 200, 16) uint8.

    Raises:
        DataFileError: missing, not an .npz, an array absent or of another shape or type, labels > 17.
    """
    path = Path(path)
    fix = fix_for(path)
    if not path.is_file():
        raise DataFileError(path, "missing", fix)
    out: dict[str, np.ndarray] = {}
    try:
        with np.load(path) as data:
            for key in keys:
                if key not in data:
                    has = ", ".join(sorted(data.keys()))
                    raise DataFileError(path, f"lacks the array '{key}' (has {has})", fix)
                out[key] = np.asarray(data[key])
    except DataFileError:
        raise
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, KeyError) as error:
        # A cut or overwritten archive raises any of these, from zipfile or numpy's format reader.
        raise DataFileError(path, f"unreadable as an .npz archive ({type(error).__name__}: {error})",
                            fix) from None
    for key, arr in out.items():
        if arr.shape != GRID_SHAPE:
            raise DataFileError(path, f"{key} has shape {arr.shape}, expected {GRID_SHAPE}", fix)
        if arr.dtype != np.uint8:
            raise DataFileError(path, f"{key} has dtype {arr.dtype}, expected uint8", fix)
    if "semantics" in out and int(out["semantics"].max()) >= NUM_CLASSES:
        raise DataFileError(
            path, f"semantics has labels up to {int(out['semantics'].max())}, expected 0..{NUM_CLASSES - 1}",
            fix,
        )
    return out


# -- tables ----------------------------------------------------------------------------------------------


def pose_problem(record: dict[str, Any]) -> str | None:
    """Problem of an ego_pose or calibrated_sensor record (finite translation, finite non-zero quaternion)."""
    translation = record.get("translation")
    rotation = record.get("rotation")
    try:
        t = [float(v) for v in translation]  # type: ignore[union-attr]  # None raises TypeError, handled below
        q = [float(v) for v in rotation]  # type: ignore[union-attr]
    except (TypeError, ValueError):
        return f"translation {translation!r} / rotation {rotation!r} are not numbers"
    if len(t) != 3 or not all(math.isfinite(v) for v in t):
        return f"translation {t} is not 3 finite numbers"
    if len(q) != 4 or not all(math.isfinite(v) for v in q) or sum(v * v for v in q) < 1e-12:
        return f"rotation {q} is not a finite non-zero quaternion (w, x, y, z)"
    return None


def first_bad_pose(records: Iterable[dict[str, Any]]) -> tuple[dict[str, Any], str] | None:
    """The first record with a `pose_problem`, with the problem (None when all are fine)."""
    for record in records:
        problem = pose_problem(record)
        if problem is not None:
            return record, problem
    return None


def table_problem(path: Path) -> str | None:
    """Problem of a nuScenes table file (a JSON list), None when fine."""
    if not path.is_file():
        return "missing"
    try:
        with path.open() as f:
            table = json.load(f)
    except json.JSONDecodeError as error:
        return f"not valid JSON (line {error.lineno}, column {error.colno}: {error.msg}; cut short?)"
    except (OSError, UnicodeDecodeError) as error:
        return f"cannot be read ({error})"
    if not isinstance(table, list):
        return f"not a JSON list (a {type(table).__name__})"
    return None


def open_nuscenes(dataroot: Path | str, version: str, *, verbose: bool = False) -> Any:
    """The official devkit's `NuScenes` of a dataroot, or an error that names the file at fault.

    The devkit's own errors (a bare JSONDecodeError, an assertion about label counts) do not say which file
    is broken; on failure the tables and lidarseg files are examined to name it.

    Raises:
        DataFileError: a table is missing or not JSON, a lidarseg file is missing, or (when no single file
            is to blame) the table folder with the devkit's message.
    """
    from nuscenes.nuscenes import NuScenes

    dataroot = Path(dataroot)
    table_root = dataroot / version
    try:
        return NuScenes(version=version, dataroot=str(dataroot), verbose=verbose)
    except Exception as error:
        text = str(error).strip()
        devkit_message = f"{type(error).__name__}: {text.splitlines()[0] if text else ''}"
    _raise_table_problem(dataroot, table_root)
    raise DataFileError(
        table_root,
        f"the nuscenes-devkit cannot load these tables ({devkit_message})",
        f"run `fusionocc check-data {dataroot}` to find the damaged piece",
    )


def _raise_table_problem(dataroot: Path, table_root: Path) -> None:
    """Raises DataFileError for the first table or lidarseg file that explains a devkit failure."""
    from fusionocc_core.occ3d import NUSCENES_TABLES

    names = list(NUSCENES_TABLES) + [n for n in ("lidarseg",) if (table_root / f"{n}.json").exists()]
    for name in names:
        path = table_root / f"{name}.json"
        problem = table_problem(path)
        if problem is not None:
            raise DataFileError(path, problem, fix_for(path))
    lidarseg = table_root / "lidarseg.json"
    if lidarseg.is_file():
        with lidarseg.open() as f:
            records = json.load(f)
        for record in records:
            path = dataroot / record["filename"]
            if not path.is_file():
                raise DataFileError(path, f"missing ({lidarseg.name} lists it)", fix_for(path))
        folder = dataroot / "lidarseg" / table_root.name
        found = len(list(folder.glob("*.bin"))) if folder.is_dir() else 0
        if found != len(records):
            raise DataFileError(folder, f"holds {found} label files, {lidarseg.name} lists {len(records)}",
                                fix_for(lidarseg))
