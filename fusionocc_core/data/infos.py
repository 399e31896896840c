"""Per-sample info index of a nuScenes-format dataroot (read with the official nuscenes-devkit).

The index is one pickle holding plain dicts and numpy arrays (no project classes, so it loads anywhere):

    {
      "format": "fusionocc-infos", "format_version": 1,
      "dataroot": str,                   # absolute path at preparation time (overridable when loading)
      "nusc_version": "v1.0-trainval",
      "split_source": "nuscenes" | "hash" | "listed",
      "imgseg_root": str | None,         # folder of imgseg maps, relative paths resolved against it
      "lidarseg_to_occ": (256,) uint8,   # lidarseg label index -> Occ3D class id
      "samples": [info, ...],            # keyframes in scene/time order
    }

and each `info`:

    token, scene_name, split, timestamp [us], prev/next (sample tokens or None),
    frame_index (position within the scene),
    lidar: {sample_data_token, path, lidarseg_path | None, sensor2ego (4,4), ego2global (4,4), timestamp},
    cams: {CAM_NAME: {sample_data_token, path, intrinsics (3,3), sensor2ego (4,4), ego2global (4,4),
                      timestamp, width, height}},
    lidar_history: up to 7 previous keyframe sample tokens (newest first) for the multi-frame lidar window,
    prev_camera: previous keyframe token for the 2-frame camera window (None at a scene's first keyframe),
    occ_path: "gts/<scene>/<token>/labels.npz" (relative to the dataroot),
    imgseg_path: "<scene>/<token>.npy" (relative to imgseg_root).

Paths are relative to the dataroot, so a moved dataset needs only a new `dataroot`. Keyframes link to each
other by token, so no pose is stored twice.

Splits: when every scene name of the dataroot belongs to the official lists of its version
(`nuscenes.utils.splits`: train/val for v1.0-trainval, mini_train/mini_val for v1.0-mini, test for v1.0-test),
those lists are used. Otherwise (the synthetic world, custom data) the split is deterministic by scene
name: the scenes sorted by SHA-1 of their name, the first `round(val_fraction * n)` (at least one when there
are two or more scenes) go to "val", the rest to "train". Adding scenes can move scenes between splits; to
keep a held-out set fixed while the dataset grows, name the val scenes (`val_scenes`, `prepare --val-scenes`):
those are "val", every other scene "train" (split_source "listed").
"""

from __future__ import annotations

import hashlib
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from fusionocc_core.data.files import fix_for, pose_problem
from fusionocc_core.errors import FusionOccError
from fusionocc_core.geometry import make_transform
from fusionocc_core.occ3d import CAMERA_NAMES, LIDAR_NAME, LIDARSEG_TO_OCC

INFO_FORMAT = "fusionocc-infos"
INFO_FORMAT_VERSION = 1
DEFAULT_INFO_NAME = "fusionocc_infos.pkl"
NUM_LIDAR_HISTORY = 7  # previous keyframes merged with the current one (8 lidar frames in total)

_OFFICIAL_SPLITS = {
    "v1.0-trainval": ("train", "val"),
    "v1.0-mini": ("mini_train", "mini_val"),
    "v1.0-test": ("test",),
}


class InfoIndexError(FusionOccError, RuntimeError):
    """The info index is missing, unreadable or from another format version."""


@dataclass(frozen=True)
class InfoBuildConfig:
    """Options of `build_infos`."""

    version: str = "v1.0-trainval"  # nuScenes table folder name, v1.0-<version>
    val_fraction: float = 0.2  # share of scenes in "val" for the hash split (non-nuScenes scene names)
    val_scenes: tuple[str, ...] = ()  # when given: exactly these scenes are "val", the rest "train"
    imgseg_root: str | None = (
        "imgseg"  # where `prepare` writes imgseg maps; relative paths are under the out dir
    )


def assign_splits(
    scene_names: list[str], version: str, *, val_fraction: float = 0.2, val_scenes: tuple[str, ...] = ()
) -> tuple[dict[str, str], str]:
    """Split name per scene and the source of the split ("nuscenes", "hash" or "listed"); see the module
    docstring.

    Raises:
        InfoIndexError: a name in `val_scenes` is not a scene of the dataroot, or it names every scene.
    """
    from nuscenes.utils.splits import create_splits_scenes

    if val_scenes:
        unknown = sorted(set(val_scenes) - set(scene_names))
        if unknown:
            raise InfoIndexError(
                f"val scenes {', '.join(unknown)} are not in the dataroot (it has {len(scene_names)} scenes"
                + (f", {scene_names[0]} .. {scene_names[-1]})" if scene_names else ")")
            )
        if set(scene_names) <= set(val_scenes):
            raise InfoIndexError("--val-scenes names every scene: nothing would be left to train on")
        return {name: ("val" if name in val_scenes else "train") for name in scene_names}, "listed"

    official = create_splits_scenes(verbose=False)
    split_names = _OFFICIAL_SPLITS.get(version, ())
    mapping = {scene: name.replace("mini_", "") for name in split_names for scene in official[name]}
    if scene_names and all(name in mapping for name in scene_names):
        return {name: mapping[name] for name in scene_names}, "nuscenes"
    ranked = sorted(scene_names, key=lambda n: hashlib.sha1(n.encode()).hexdigest())
    n_val = round(val_fraction * len(ranked))
    if len(ranked) >= 2:
        n_val = min(max(n_val, 1), len(ranked) - 1)
    return {name: ("val" if i < n_val else "train") for i, name in enumerate(ranked)}, "hash"


def lidarseg_lookup(nusc: Any) -> np.ndarray:
    """(256,) uint8 table: lidarseg label index (category 'index') -> Occ3D class id (default 0 'others')."""
    table = np.zeros(256, dtype=np.uint8)
    for cat in nusc.category:
        if "index" in cat:
            table[int(cat["index"])] = LIDARSEG_TO_OCC.get(cat["name"], 0)
    return table


def _sensor_entry(nusc: Any, sd_token: str) -> dict[str, Any]:
    sd = nusc.get("sample_data", sd_token)
    cs = nusc.get("calibrated_sensor", sd["calibrated_sensor_token"])
    pose = nusc.get("ego_pose", sd["ego_pose_token"])
    for table, record in (("ego_pose", pose), ("calibrated_sensor", cs)):
        # A NaN here would silently move every point and voxel of the frame: refuse it by name.
        problem = pose_problem(record)
        if problem is not None:
            path = Path(nusc.dataroot) / nusc.version / f"{table}.json"
            raise InfoIndexError(
                f"{path}: {table} {record['token']} (of {sd['filename']}): {problem}; {fix_for(path)}"
            )
    entry: dict[str, Any] = {
        "sample_data_token": sd_token,
        "path": sd["filename"],
        "sensor2ego": make_transform(cs["translation"], cs["rotation"]),
        "ego2global": make_transform(pose["translation"], pose["rotation"]),
        "timestamp": int(sd["timestamp"]),
    }
    if cs.get("camera_intrinsic"):
        entry["intrinsics"] = np.asarray(cs["camera_intrinsic"], dtype=np.float64)
        entry["width"], entry["height"] = int(sd["width"]), int(sd["height"])
    return entry


def build_infos(
    nusc: Any, *, config: InfoBuildConfig = InfoBuildConfig(), progress: bool = True
) -> dict[str, Any]:
    """Builds the info index of every keyframe of a loaded `NuScenes` object.

    Args:
        nusc: `nuscenes.nuscenes.NuScenes` instance (lidarseg loaded when present).
        config: split and output options.
        progress: show a tqdm bar over scenes.

    Returns:
        The index dict described in the module docstring.

    Raises:
        InfoIndexError: a keyframe lacks one of the six cameras or LIDAR_TOP, or a pose of it is not finite.
    """
    lidarseg_files = {rec["sample_data_token"]: rec["filename"] for rec in getattr(nusc, "lidarseg", [])}
    scenes = sorted(nusc.scene, key=lambda s: s["name"])
    splits, split_source = assign_splits(
        [s["name"] for s in scenes], config.version, val_fraction=config.val_fraction,
        val_scenes=config.val_scenes,
    )
    samples: list[dict[str, Any]] = []
    for scene in tqdm(scenes, desc="info index", unit="scene", disable=not progress):
        token, frame_index = scene["first_sample_token"], 0
        history: list[str] = []
        while token:
            sample = nusc.get("sample", token)
            missing = [name for name in (*CAMERA_NAMES, LIDAR_NAME) if name not in sample["data"]]
            if missing:
                raise InfoIndexError(f"sample {token} of {scene['name']} has no {', '.join(missing)} data")
            lidar = _sensor_entry(nusc, sample["data"][LIDAR_NAME])
            lidar["lidarseg_path"] = lidarseg_files.get(lidar["sample_data_token"])
            samples.append(
                {
                    "token": token,
                    "scene_name": scene["name"],
                    "split": splits[scene["name"]],
                    "timestamp": int(sample["timestamp"]),
                    "prev": sample["prev"] or None,
                    "next": sample["next"] or None,
                    "frame_index": frame_index,
                    "lidar": lidar,
                    "cams": {name: _sensor_entry(nusc, sample["data"][name]) for name in CAMERA_NAMES},
                    "lidar_history": list(history[:NUM_LIDAR_HISTORY]),
                    "prev_camera": sample["prev"] or None,
                    "occ_path": f"gts/{scene['name']}/{token}/labels.npz",
                    "imgseg_path": f"{scene['name']}/{token}.npy",
                }
            )
            history.insert(0, token)
            token, frame_index = sample["next"], frame_index + 1
    return {
        "format": INFO_FORMAT,
        "format_version": INFO_FORMAT_VERSION,
        "dataroot": str(Path(nusc.dataroot).resolve()),
        "nusc_version": config.version,
        "split_source": split_source,
        "imgseg_root": config.imgseg_root,
        "lidarseg_to_occ": lidarseg_lookup(nusc),
        "samples": samples,
    }


def save_infos(index: dict[str, Any], path: str | Path) -> Path:
    """Writes the index atomically (temporary file + rename) and returns its path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    with tmp.open("wb") as f:
        pickle.dump(index, f, protocol=pickle.HIGHEST_PROTOCOL)
    tmp.replace(path)
    return path


def load_infos(path: str | Path, *, dataroot: str | Path | None = None) -> dict[str, Any]:
    """Reads an info index written by `save_infos`.

    Args:
        path: the .pkl file.
        dataroot: replaces the stored dataroot (dataset moved or mounted elsewhere).

    Raises:
        InfoIndexError: file missing, not an info index, or of another format version; the message names the
            `fusionocc prepare` command that rewrites it.
    """
    path = Path(path)
    fix = f"run `fusionocc prepare DATAROOT --out {path.parent}` to write it"
    if not path.is_file():
        raise InfoIndexError(f"info index {path} does not exist; {fix}")
    try:
        with path.open("rb") as f:
            index = pickle.load(f)
    except Exception as error:
        raise InfoIndexError(f"info index {path} is unreadable ({type(error).__name__}); {fix}") from None
    if not isinstance(index, dict) or index.get("format") != INFO_FORMAT:
        raise InfoIndexError(f"{path} is not a FusionOcc info index; {fix}")
    if index.get("format_version") != INFO_FORMAT_VERSION:
        raise InfoIndexError(
            f"info index {path} has format version {index.get('format_version')}, this code "
            f"reads {INFO_FORMAT_VERSION}; {fix}"
        )
    if dataroot is not None:
        index["dataroot"] = str(Path(dataroot).resolve())
    index["index_path"] = str(path.resolve())
    return index


def resolve_imgseg_root(index: dict[str, Any]) -> Path | None:
    """Absolute imgseg folder of an index (relative roots are next to the index file, else the dataroot)."""
    root = index.get("imgseg_root")
    if root is None:
        return None
    root_path = Path(root)
    if root_path.is_absolute():
        return root_path
    base = Path(index["index_path"]).parent if "index_path" in index else Path(index["dataroot"])
    return base / root_path


def samples_by_token(index: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Token -> info lookup of an index."""
    return {info["token"]: info for info in index["samples"]}
