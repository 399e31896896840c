"""`OccupancyDataset`: one keyframe of an info index as tensors in the FusionOcc forward contract.

A sample (before `collate`) holds, with T = 2 camera frames (0 = current keyframe, 1 = previous keyframe) and
N = 6 cameras in `occ3d.CAMERA_NAMES` order, H x W the input size:

| key | shape, dtype | meaning |
|---|---|---|
| images | (T, N, 3, H, W) float32 | augmented RGB, mmlab ImageNet mean/std |
| intrinsics | (T, N, 3, 3) float32 | camera matrices of the original images |
| cam_to_key_ego | (T, N, 4, 4) float32 | camera -> current keyframe ego (un-flipped; the model applies bda) |
| post_rots, post_trans | (T, N, 3, 3), (T, N, 3) float32 | image augmentation, input px = R @ src px + t |
| bda | (3, 3) float32 | BEV flip matrix |
| points | (P, 5) float32 | x, y, z [m] (key ego frame, flipped by bda), intensity, time lag [s] |
| sparse_depth | (N, H, W) float32 | metric depth of the current sweep per input pixel, 0 = none |
| voxel_semantics | (200, 200, 16) uint8 | Occ3D labels, flipped by bda (absent without `with_labels`) |
| mask_camera, mask_lidar | (200, 200, 16) bool | Occ3D visibility masks, flipped by bda |
| imgseg | (N, H / s, W / s) uint8 | image segmentation targets at stride s (17 = ignore), if prepared |
| token, scene_name | str | the keyframe |

Decisions about the original's quirks (see the model spec):
- Key ego frame: the ego pose of the LIDAR_TOP keyframe sample_data, the frame Occ3D labels are defined in
  (BEVDet takes CAM_FRONT's ego pose; the two differ by the ego motion within one sweep, a few cm).
- Lidar window: the current keyframe sweep plus up to 7 previous keyframes of the same scene, moved into the
  key ego frame with the ego poses; the 5th feature is the time lag [s] (the ring index only serves thinning).
  A scene's first keyframes simply have fewer frames; the first keyframe's previous camera frame is itself.
- Thinning (`fusionocc_core.lidar_thinning`, per sweep): the original keeps ring > 16 or a random 20% of the
  rest, reading the ring from column 4 after the multi-sweep loader may have replaced it with the time lag.
  Here the true ring index (column 4 of each `.pcd.bin`) is read before the time lag is written, so the rule
  means what it says; training draws the 20% at random, evaluation keeps every 5th point of each sweep's lower
  beams, exactly as the streaming Predictor does (node and offline scores agree). `thin_points=False` turns it
  off.
- Range filter: fixed half-open bounds [min, max) of `occ3d.POINT_CLOUD_RANGE` (the original nudges its bounds
  by +-0.001 on every call; ours do not move).
- Sparse depth: from the whole current sweep (before thinning and range filter), nearest depth per input pixel
  within [1, 45) m, projected through the augmented image matrices by the model's own
  `lidar_depth.sparse_depth_map` (a point lands on pixel round(u), round(v), as the original and the streaming
  predictor do). The random depth-patch dropout belongs to the model (training only).

Worker-safe: the index is read at construction, files are opened only inside `__getitem__`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from fusionocc_core.data.augment import (
    BevAugConfig,
    ImageAugConfig,
    bda_matrix,
    flip_volume,
    image_aug_matrices,
    normalize_image,
    sample_bev_flips,
    sample_image_aug,
    warp_image,
    warp_label_map,
)
from fusionocc_core.data.files import DataFileError, read_image, read_occ, read_points
from fusionocc_core.data.infos import load_infos, resolve_imgseg_root, samples_by_token
from fusionocc_core.errors import FusionOccError
from fusionocc_core.geometry import invert_transform
from fusionocc_core.lidar_thinning import thinning_mask
from fusionocc_core.model.lidar_depth import sparse_depth_map
from fusionocc_core.occ3d import (
    CAMERA_NAMES,
    FREE_LABEL,
    NUM_CLASSES,
    POINT_CLOUD_RANGE,
)


class DatasetError(FusionOccError, RuntimeError):
    """A file the dataset needs is missing or malformed (message names the fixing command)."""

    def __init__(self, message: str = "") -> None:
        # A DataLoader worker's error is re-raised in the main process as DatasetError("Caught DatasetError in
        # DataLoader worker process N.\nOriginal Traceback ...\n...DatasetError: <message>"): keep the
        # original one-line message, so commands print the file and its problem, not a traceback.
        if message.startswith("Caught DatasetError") and "\nOriginal Traceback" in message:
            message = message.rstrip().splitlines()[-1].split("DatasetError: ", 1)[-1]
        super().__init__(message)


@dataclass(frozen=True)
class DatasetConfig:
    """Options of `OccupancyDataset` beyond the input size."""

    image_aug: ImageAugConfig = field(default_factory=ImageAugConfig)
    bev_aug: BevAugConfig = field(default_factory=BevAugConfig)
    num_lidar_frames: int = 8  # current keyframe + 7 previous ones
    thin_points: bool = True  # the original's compute saver, see the module docstring
    thin_ring_above: int = 16  # points with ring index > this are all kept
    thin_keep_fraction: float = 0.2  # share of the remaining points kept
    min_depth: float = 1.0  # sparse depth range [m]
    max_depth: float = 45.0
    imgseg_stride: int = 16  # stride of the returned imgseg targets (the segmentation head's feature stride)
    with_labels: bool = True  # load gts (off for the test split / inference)
    with_imgseg: bool = True  # load imgseg targets when the index has an imgseg root


class OccupancyDataset(Dataset):
    """Keyframes of one split of an info index, augmented for training or fixed for evaluation.

    Args:
        info_path: info index written by `fusionocc prepare`.
        input_size: network input (H, W) [px]; overrides `config.image_aug.input_size`.
        train: random augmentation when True, the fixed test transform otherwise.
        split: "train", "val", "test" or None for every sample of the index.
        config: augmentation and loading options.
        dataroot: replaces the dataroot stored in the index.
    """

    def __init__(
        self,
        info_path: str | Path,
        *,
        input_size: tuple[int, int] = (512, 1408),
        train: bool,
        split: str | None = None,
        config: DatasetConfig = DatasetConfig(),
        dataroot: str | Path | None = None,
    ) -> None:
        index = load_infos(info_path, dataroot=dataroot)
        self.train = train
        self.input_size = (int(input_size[0]), int(input_size[1]))
        self.config = config
        self.image_aug = ImageAugConfig(**{**config.image_aug.__dict__, "input_size": self.input_size})
        self.dataroot = Path(index["dataroot"])
        self.imgseg_root = resolve_imgseg_root(index) if config.with_imgseg else None
        self._by_token = samples_by_token(index)
        self.samples = [info for info in index["samples"] if split is None or info["split"] == split]
        if not self.samples:
            splits = sorted({info["split"] for info in index["samples"]})
            raise DatasetError(f"split '{split}' of {info_path} is empty; the index has splits {splits}")

    def __len__(self) -> int:
        return len(self.samples)

    # -- loading ---------------------------------------------------------------------------------------------

    def _path(self, relative: str, what: str) -> Path:
        path = self.dataroot / relative
        if not path.is_file():
            raise DatasetError(f"{what} {path} is missing; run `fusionocc check-data {self.dataroot}`")
        return path

    def _damaged(self, error: DataFileError) -> DatasetError:
        return DatasetError(
            f"{error}; `fusionocc check-data {self.dataroot} --deep` lists every damaged file"
        )

    def _load_points(self, info: dict[str, Any]) -> np.ndarray:
        path = self._path(info["lidar"]["path"], "lidar file")
        try:
            return read_points(path)
        except DataFileError as error:
            raise self._damaged(error) from None

    def _lidar_window(self, info: dict[str, Any], key_ego_inv: np.ndarray,
                      rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """(P, 5) [x, y, z, intensity, time_lag] of the (thinned) lidar window in the key ego frame, and the
        current sweep's full xyz (for sparse depth)."""
        frames = [info] + [
            self._by_token[t] for t in info["lidar_history"][: self.config.num_lidar_frames - 1]
        ]
        merged, current = [], None
        for frame in frames:
            raw = self._load_points(frame)
            lidar = frame["lidar"]
            to_key = key_ego_inv @ lidar["ego2global"] @ lidar["sensor2ego"]
            xyz = raw[:, :3].astype(np.float64) @ to_key[:3, :3].T + to_key[:3, 3]
            lag = (info["lidar"]["timestamp"] - lidar["timestamp"]) * 1e-6
            if current is None:
                current = xyz
            points = np.column_stack([xyz, raw[:, 3], np.full(len(raw), lag)])
            if self.config.thin_points:  # per sweep, so the Predictor thins a streamed sweep identically
                points = points[thinning_mask(raw[:, 4], rng=rng if self.train else None,
                                              ring_above=self.config.thin_ring_above,
                                              keep_fraction=self.config.thin_keep_fraction)]
            merged.append(points)
        assert current is not None  # the window always holds the keyframe's own sweep
        return np.concatenate(merged).astype(np.float32), current

    @staticmethod
    def _crop(points: np.ndarray) -> np.ndarray:
        lo, hi = np.array(POINT_CLOUD_RANGE[:3]), np.array(POINT_CLOUD_RANGE[3:])
        inside = np.all((points[:, :3] >= lo) & (points[:, :3] < hi), axis=1)
        return points[inside]

    def _load_image(self, cam: dict[str, Any]) -> np.ndarray:
        path = self._path(cam["path"], "camera image")
        try:
            # The size must be the record's: the intrinsics and the augmentation matrices refer to it.
            return read_image(path, size=(cam["width"], cam["height"]), jpeg=False)
        except DataFileError as error:
            raise self._damaged(error) from None

    def _load_labels(self, info: dict[str, Any]) -> dict[str, np.ndarray]:
        path = self.dataroot / info["occ_path"]
        if not path.is_file():
            raise DatasetError(
                f"Occ3D ground truth {path} is missing; put the Occ3D-nuScenes gts/ folder into "
                f"{self.dataroot} (or regenerate the synthetic world with `fusionocc synth`), then "
                f"run `fusionocc check-data {self.dataroot}`"
            )
        try:
            return read_occ(path, ("semantics", "mask_camera", "mask_lidar"))
        except DataFileError as error:
            raise self._damaged(error) from None

    def _load_imgseg(self, info: dict[str, Any]) -> np.ndarray:
        path = self.imgseg_root / info["imgseg_path"]
        if not path.is_file():
            raise DatasetError(
                f"imgseg map {path} is missing; run `fusionocc prepare {self.dataroot}` "
                f"(or pass DatasetConfig(with_imgseg=False))"
            )
        try:
            seg = np.load(path)
        except (OSError, ValueError, EOFError) as error:
            raise DatasetError(
                f"imgseg map {path} is unreadable ({type(error).__name__}: {error}); rewrite it with "
                f"`fusionocc prepare {self.dataroot} --recompute-imgseg`"
            ) from None
        if seg.ndim != 3 or seg.shape[0] != len(CAMERA_NAMES):
            raise DatasetError(
                f"imgseg map {path} has shape {seg.shape}, expected ({len(CAMERA_NAMES)}, h, w); rewrite it "
                f"with `fusionocc prepare {self.dataroot} --recompute-imgseg`"
            )
        return seg

    def class_counts(self, *, use_camera_mask: bool = False, progress: bool = False) -> np.ndarray:
        """(18,) voxel count per Occ3D class over this split's labels (only camera-visible voxels with
        `use_camera_mask`), read straight from the label files (augmentation does not change counts)."""
        from tqdm import tqdm

        counts = np.zeros(NUM_CLASSES, dtype=np.int64)
        for info in tqdm(self.samples, desc="class counts", unit="label", disable=not progress):
            labels = self._load_labels(info)
            semantics = labels["semantics"]
            if use_camera_mask:
                semantics = semantics[labels["mask_camera"].astype(bool)]
            found = np.bincount(semantics.reshape(-1).astype(np.int64), minlength=NUM_CLASSES)
            if len(found) > NUM_CLASSES:
                raise DatasetError(f"{self.dataroot / info['occ_path']} holds label {len(found) - 1}; Occ3D "
                                   f"labels are 0..{NUM_CLASSES - 1}")
            counts += found
        return counts

    # -- one sample ------------------------------------------------------------------------------------------

    def __getitem__(self, idx: int) -> dict[str, Any]:
        info = self.samples[idx]
        # Training draws from torch's RNG (seeded per worker and epoch); evaluation is fixed per sample.
        seed = int(torch.randint(0, 2**62, ())) if self.train else idx
        rng = np.random.default_rng(seed)
        key_ego_inv = invert_transform(info["lidar"]["ego2global"])
        first_cam = info["cams"][CAMERA_NAMES[0]]
        aug = sample_image_aug(
            (first_cam["height"], first_cam["width"]), self.image_aug, train=self.train, rng=rng
        )
        post_rot, post_tran = image_aug_matrices(aug)
        flip_x, flip_y = sample_bev_flips(self.config.bev_aug, train=self.train, rng=rng)
        bda = bda_matrix(flip_x, flip_y)

        prev = self._by_token[info["prev_camera"]] if info["prev_camera"] else info
        images, intrinsics, cam_to_key = [], [], []
        for frame in (info, prev):
            for name in CAMERA_NAMES:
                cam = frame["cams"][name]
                image = warp_image(self._load_image(cam), post_rot, post_tran, self.input_size,
                                   resize=aug.resize)
                images.append(normalize_image(image))
                intrinsics.append(cam["intrinsics"])
                cam_to_key.append(key_ego_inv @ cam["ego2global"] @ cam["sensor2ego"])
        n, t = len(CAMERA_NAMES), 2
        h, w = self.input_size
        intrinsics_arr = np.stack(intrinsics).reshape(t, n, 3, 3)
        cam_to_key_arr = np.stack(cam_to_key).reshape(t, n, 4, 4)
        post_rots = np.broadcast_to(post_rot, (t, n, 3, 3))
        post_trans = np.broadcast_to(post_tran, (t, n, 3))

        window, current_xyz = self._lidar_window(info, key_ego_inv, rng)
        points = self._crop(window)
        points[:, :3] = points[:, :3] @ bda.T.astype(np.float32)
        depth = sparse_depth_map(
            torch.from_numpy(current_xyz),
            torch.from_numpy(intrinsics_arr[0]),
            torch.from_numpy(cam_to_key_arr[0]),
            torch.from_numpy(np.ascontiguousarray(post_rots[0])),
            torch.from_numpy(np.ascontiguousarray(post_trans[0])),
            h,
            w,
            min_depth=self.config.min_depth,
            max_depth=self.config.max_depth,
        )

        sample: dict[str, Any] = {
            "images": torch.from_numpy(np.stack(images).reshape(t, n, 3, h, w)),
            "intrinsics": torch.from_numpy(intrinsics_arr.astype(np.float32)),
            "cam_to_key_ego": torch.from_numpy(cam_to_key_arr.astype(np.float32)),
            "post_rots": torch.from_numpy(post_rots.astype(np.float32)),
            "post_trans": torch.from_numpy(post_trans.astype(np.float32)),
            "bda": torch.from_numpy(bda.astype(np.float32)),
            "points": torch.from_numpy(np.ascontiguousarray(points)),
            "sparse_depth": depth,
            "token": info["token"],
            "scene_name": info["scene_name"],
        }
        if self.config.with_labels:
            labels = self._load_labels(info)
            sample["voxel_semantics"] = torch.from_numpy(
                flip_volume(labels["semantics"].astype(np.uint8), flip_x, flip_y)
            )
            for key in ("mask_camera", "mask_lidar"):
                sample[key] = torch.from_numpy(flip_volume(labels[key] != 0, flip_x, flip_y))
        if self.imgseg_root is not None:
            seg = self._load_imgseg(info)
            stride = -(-first_cam["width"] // seg.shape[-1])  # the stored map's stride (8)
            sample["imgseg"] = torch.from_numpy(
                np.stack(
                    [
                        warp_label_map(
                            seg[i],
                            source_stride=stride,
                            post_rot=post_rot,
                            post_tran=post_tran,
                            out_hw=self.input_size,
                            out_stride=self.config.imgseg_stride,
                            fill=FREE_LABEL,
                        )
                        for i in range(n)
                    ]
                )
            )
        return sample
