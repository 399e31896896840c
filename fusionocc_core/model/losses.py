"""FusionOcc training losses, as the original computes them.

occupancy   cross-entropy over all voxels (the original: no class weights); with `use_camera_mask` each voxel
            is weighted by the camera-visibility mask and the sum is divided by the number of visible voxels.
            Optional per-class weights (an addition for short trainings, see `enet_class_weights`) make it
            sum(w[label] * ce) / sum(w[label]), torch's weighted cross-entropy
depth       binary cross-entropy of the softmaxed key-frame depth against the one-hot of the minimum lidar
            depth per 16 x 16 patch, only over patches holding a lidar point (sum / count), x 0.1
image seg   cross-entropy of the key-frame image-seg logits against the labels sampled every `stride` pixels
            (top-left pixel of each patch, as the original), label 17 ("free"/no point) ignored, x 0.1
lovasz      optional (not in the original, off by default): the Lovasz-softmax loss of the occupancy
            probabilities, a convex surrogate of 1 - IoU per class (Berman et al., CVPR 2018), the term
            occupancy networks such as TPVFormer and OccFormer add to the cross-entropy for rare classes
visible     optional (off by default): the occupancy and Lovasz terms once more over the camera-visible
            voxels only, x visible_weight, next to the all-voxel terms. Trained over all voxels, a building's
            interior outweighs its visible surface a hundredfold and the surface blurs; this keeps both the
            no-mask and the camera-mask protocol in the objective
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from fusionocc_core.model.lidar_depth import depth_input_patches
from fusionocc_core.occ3d import FREE_LABEL


def enet_class_weights(counts: np.ndarray | torch.Tensor, c: float = 1.02) -> torch.Tensor:
    """Class weights 1 / ln(c + p_k) from label counts (ENet, Paszke et al. 2016): about 1.5 for a class
    covering most voxels ("free"), up to 1 / ln(c) = 50.5 for a vanishingly rare one. A class that never
    occurs gets the largest weight (it contributes nothing until it appears).

    Args:
        counts: (C,) number of voxels per class (e.g. over the training labels).
        c: the offset; smaller spreads the weights further apart.

    Returns:
        (C,) float32 weights.
    """
    counts = torch.as_tensor(np.asarray(counts), dtype=torch.float64)
    if counts.dim() != 1 or bool((counts < 0).any()) or float(counts.sum()) <= 0:
        raise ValueError(f"class counts must be a 1-D array of non-negative numbers with a positive sum, got "
                         f"{counts.tolist()}")
    if c <= 1:
        raise ValueError(f"the ENet offset c must be > 1 (weights 1 / ln(c + p)), got {c}")
    return (1.0 / torch.log(c + counts / counts.sum())).float()


def occupancy_loss(
    logits: torch.Tensor, labels: torch.Tensor, camera_mask: torch.Tensor | None = None,
    class_weights: torch.Tensor | None = None,
) -> torch.Tensor:
    """Occupancy cross-entropy.

    Args:
        logits: (B, X, Y, Z, C) logits.
        labels: (B, X, Y, Z) class ids 0..C-1.
        camera_mask: optional (B, X, Y, Z) 0/1 voxel weights; the loss is then sum(w * ce) / max(sum(w), 1).
        class_weights: optional (C,) weight per class; each voxel's weight is then also multiplied by the
            weight of its label (and the sum divided by the sum of those weights, as torch's weighted CE).

    Returns:
        Scalar loss (float32).
    """
    if logits.shape[:-1] != labels.shape:
        raise ValueError(f"occupancy logits {tuple(logits.shape)} do not match labels {tuple(labels.shape)}")
    if class_weights is not None and class_weights.shape != (logits.shape[-1],):
        raise ValueError(f"class_weights {tuple(class_weights.shape)} do not match the {logits.shape[-1]} "
                         f"classes of the logits")
    flat_logits = logits.reshape(-1, logits.shape[-1]).float()  # (B*X*Y*Z, C)
    flat_labels = labels.reshape(-1).long()
    if camera_mask is None:
        weight = None if class_weights is None else class_weights.to(flat_logits)
        return F.cross_entropy(flat_logits, flat_labels, weight=weight)
    if camera_mask.shape != labels.shape:
        raise ValueError(
            f"camera_mask {tuple(camera_mask.shape)} does not match labels {tuple(labels.shape)}"
        )
    weights = camera_mask.reshape(-1).float()
    # Voxels of weight 0 add nothing: the cross-entropy of the others only (the visible voxels are a small share).
    keep = weights > 0
    flat_logits, flat_labels, weights = flat_logits[keep], flat_labels[keep], weights[keep]
    if class_weights is not None:
        weights = weights * class_weights.to(flat_logits)[flat_labels]
    per_voxel = F.cross_entropy(flat_logits, flat_labels, reduction="none")
    return (per_voxel * weights).sum() / weights.sum().clamp(min=1.0)


def lovasz_grad(ground_truth_sorted: torch.Tensor) -> torch.Tensor:
    """Gradient of the Lovasz extension of the Jaccard loss with respect to the sorted errors.

    Args:
        ground_truth_sorted: (..., P) 0/1 float, the class membership of the voxels sorted by decreasing error
            (one row per class).

    Returns:
        (..., P) weights g_i = J(i) - J(i - 1), J(i) the Jaccard loss of the i largest errors called wrong.
    """
    # With k = 1..P and m_k the members among the first k: intersection = positives - m_k, union = positives + k - m_k,
    # so 1 - intersection / union = k / union. Counts of 0/1 values are exact in float32 below 2^24 voxels.
    positives = ground_truth_sorted.sum(-1, keepdim=True)
    called = torch.arange(1, ground_truth_sorted.shape[-1] + 1, dtype=ground_truth_sorted.dtype,
                          device=ground_truth_sorted.device)
    jaccard = called / (positives + called - ground_truth_sorted.cumsum(-1))
    return torch.cat([jaccard[..., :1], jaccard[..., 1:] - jaccard[..., :-1]], dim=-1)


def lovasz_softmax_loss(
    logits: torch.Tensor, labels: torch.Tensor, camera_mask: torch.Tensor | None = None
) -> torch.Tensor:
    """Lovasz-softmax loss (Berman et al., "The Lovasz-Softmax loss", CVPR 2018) of occupancy logits.

    For every class present in the labels: the errors |[label == c] - p_c| sorted in decreasing order, dotted
    with `lovasz_grad` of the sorted memberships; the mean over those classes. On one-hot probabilities it is
    exactly the mean of 1 - IoU over the present classes (the extension is tight at the vertices), which the
    tests check.

    Args:
        logits: (B, X, Y, Z, C) logits.
        labels: (B, X, Y, Z) class ids 0..C-1.
        camera_mask: optional (B, X, Y, Z) mask; only voxels where it is non-zero take part.

    Returns:
        Scalar loss (float32); 0 with a graph when no voxel takes part.
    """
    if logits.shape[:-1] != labels.shape:
        raise ValueError(f"occupancy logits {tuple(logits.shape)} do not match labels {tuple(labels.shape)}")
    flat_logits = logits.reshape(-1, logits.shape[-1])  # (V, C)
    flat_labels = labels.reshape(-1).long()
    if camera_mask is not None:
        if camera_mask.shape != labels.shape:
            raise ValueError(f"camera_mask {tuple(camera_mask.shape)} does not match labels "
                             f"{tuple(labels.shape)}")
        keep = camera_mask.reshape(-1) > 0  # softmax is per voxel: select first, normalise only what is kept
        flat_logits, flat_labels = flat_logits[keep], flat_labels[keep]
    probs = flat_logits.float().softmax(dim=-1)
    if flat_labels.numel() == 0:
        return logits.sum() * 0.0
    # All present classes at once, one row each: a loop over classes selected probs[:, c] per class, and each
    # selection's backward zero-filled a full (V, C) gradient (with the sorts, 60 % of a tiny training step).
    present = torch.bincount(flat_labels, minlength=probs.shape[1]).nonzero().squeeze(1)  # unique() would sort
    member = (flat_labels.unsqueeze(0) == present.unsqueeze(1)).float()  # (K, V)
    errors = (member - probs.index_select(1, present).t()).abs()
    # Errors are >= 0, so their float32 bit patterns as int32 sort in the same order; the integer sort is faster.
    order = torch.sort(errors.detach().view(torch.int32), dim=1, descending=True).indices
    terms = (errors.gather(1, order) * lovasz_grad(member.gather(1, order))).sum(dim=1)
    return terms.mean()


def depth_loss(
    depth_probs: torch.Tensor,
    sparse_depth: torch.Tensor,
    downsample: int,
    depth_bins: tuple[float, float, float],
) -> torch.Tensor:
    """Depth BCE over patches with lidar depth (unweighted; FusionOccLoss applies the 0.1).

    Args:
        depth_probs: (B*N, D, h, w) softmaxed depth distribution of the key frame.
        sparse_depth: (B, N, H, W) key-frame lidar depth per input pixel [m], 0 = none; H = h * downsample.
        downsample: feature stride (16).
        depth_bins: (lo, hi, step) [m].

    Returns:
        Scalar: sum of BCE over valid patches and bins / max(1, number of valid patches).
    """
    target = depth_input_patches(
        sparse_depth.reshape(-1, *sparse_depth.shape[-2:]), downsample, depth_bins
    )  # (BN, D, h, w)
    if target.shape != depth_probs.shape:
        raise ValueError(
            f"depth prediction {tuple(depth_probs.shape)} does not match the target "
            f"{tuple(target.shape)} made from sparse_depth {tuple(sparse_depth.shape)}"
        )
    pred = depth_probs.permute(0, 2, 3, 1).reshape(-1, target.shape[1]).float()  # (BN*h*w, D)
    target = target.permute(0, 2, 3, 1).reshape(-1, target.shape[1]).float()
    valid = target.max(dim=1).values > 0  # patches with a lidar point in range
    with torch.autocast(device_type=pred.device.type, enabled=False):
        bce = F.binary_cross_entropy(pred[valid], target[valid], reduction="sum")
    return bce / valid.sum().clamp(min=1)


def image_seg_loss(
    seg_logits: torch.Tensor, seg_labels: torch.Tensor, ignore_label: int = FREE_LABEL
) -> torch.Tensor:
    """Image segmentation cross-entropy on the feature grid (unweighted; FusionOccLoss applies the 0.1).

    Args:
        seg_logits: (B*N, C, h, w) logits of the key frame.
        seg_labels: (B, N, H, W) or (B*N, H, W) integer labels; H and W must be multiples of h and w; the
            label of the top-left pixel of each patch is used (the original samples every stride-th pixel).
        ignore_label: label excluded from the loss (17: no lidarseg point painted there).

    Returns:
        Scalar loss; 0 (with a graph) when every sampled label is ignored.
    """
    labels = seg_labels.reshape(-1, *seg_labels.shape[-2:])  # (BN, H, W)
    h, w = seg_logits.shape[-2:]
    if labels.shape[0] != seg_logits.shape[0] or labels.shape[1] % h or labels.shape[2] % w:
        raise ValueError(
            f"seg labels {tuple(seg_labels.shape)} do not fit seg logits {tuple(seg_logits.shape)}"
        )
    labels = labels[:, :: labels.shape[1] // h, :: labels.shape[2] // w].reshape(-1).long()  # (BN*h*w,)
    logits = seg_logits.permute(0, 2, 3, 1).reshape(-1, seg_logits.shape[1]).float()
    keep = labels != ignore_label
    if not bool(keep.any()):
        return logits.sum() * 0.0
    return F.cross_entropy(logits[keep], labels[keep])


class FusionOccLoss(nn.Module):
    """All training losses of FusionOcc as a dict of named, already weighted terms (sum them to train).

    Args:
        downsample: camera feature stride (16).
        depth_bins: (lo, hi, step) [m] of the depth distribution.
        use_camera_mask: weight the occupancy loss by the camera-visibility mask (the original's `use_mask`;
            the published 56.62 mIoU model is trained WITHOUT it).
        depth_weight: factor of the depth loss (0.1).
        seg_weight: factor of the image segmentation loss (0.1).
        class_weights: optional (num_classes,) occupancy class weights (None: the original's plain CE).
        lovasz_weight: factor of an added Lovasz-softmax occupancy term (0: none, the original); it sees the
            camera-visible voxels when `use_camera_mask`, all voxels otherwise.
        visible_weight: factor of the occupancy (and Lovasz) terms repeated over the camera-visible voxels
            only, next to the all-voxel terms (0: none); needs `use_camera_mask` off (it would repeat them).
    """

    class_weights: torch.Tensor | None  # (num_classes,) buffer, or None for unweighted

    def __init__(
        self,
        downsample: int = 16,
        depth_bins: tuple[float, float, float] = (1.0, 45.0, 0.5),
        use_camera_mask: bool = False,
        depth_weight: float = 0.1,
        seg_weight: float = 0.1,
        class_weights: torch.Tensor | None = None,
        lovasz_weight: float = 0.0,
        visible_weight: float = 0.0,
    ) -> None:
        super().__init__()
        if lovasz_weight < 0:
            raise ValueError(f"lovasz_weight must be >= 0, got {lovasz_weight}")
        if visible_weight < 0:
            raise ValueError(f"visible_weight must be >= 0, got {visible_weight}")
        if visible_weight > 0 and use_camera_mask:
            raise ValueError("visible_weight repeats the loss over the camera-visible voxels next to the "
                             "all-voxel loss; with use_camera_mask there is no all-voxel loss to add it to")
        self.lovasz_weight = lovasz_weight
        self.visible_weight = visible_weight
        # not persistent: a run's weights live in its config/run folder, not in model checkpoints
        self.register_buffer("class_weights", None if class_weights is None
                             else torch.as_tensor(class_weights, dtype=torch.float32), persistent=False)
        self.downsample = downsample
        self.depth_bins = depth_bins
        self.use_camera_mask = use_camera_mask
        self.depth_weight = depth_weight
        self.seg_weight = seg_weight

    def forward(
        self,
        logits: torch.Tensor,
        labels: torch.Tensor,
        camera_mask: torch.Tensor | None = None,
        key_depth: torch.Tensor | None = None,
        sparse_depth: torch.Tensor | None = None,
        key_seg_logits: torch.Tensor | None = None,
        seg_labels: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        """Named losses.

        Args:
            logits: (B, X, Y, Z, C) occupancy logits.
            labels: (B, X, Y, Z) occupancy labels.
            camera_mask: (B, X, Y, Z) visibility mask; required when `use_camera_mask`.
            key_depth: (B*N, D, h, w) softmaxed key-frame depth (None: no depth loss, e.g. camera disabled).
            sparse_depth: (B, N, H, W) lidar depth per input pixel, required with `key_depth`.
            key_seg_logits: (B*N, C, h, w) image-seg logits (None: no seg loss).
            seg_labels: image-seg labels (see `image_seg_loss`), required with `key_seg_logits`.

        Returns:
            {"loss_occ": ..., "loss_lovasz": ... (x lovasz_weight, only when > 0), "loss_occ_visible" and
            "loss_lovasz_visible" (x visible_weight, only when > 0), "loss_depth": ... (x depth_weight),
            "loss_seg": ... (x seg_weight)}; auxiliary entries are present only when their inputs are given.
        """
        if (self.use_camera_mask or self.visible_weight > 0) and camera_mask is None:
            raise ValueError("FusionOccLoss(use_camera_mask=True or visible_weight > 0) needs camera_mask")
        losses = {"loss_occ": occupancy_loss(logits, labels, camera_mask if self.use_camera_mask else None,
                                             self.class_weights)}
        if self.lovasz_weight > 0:
            losses["loss_lovasz"] = self.lovasz_weight * lovasz_softmax_loss(
                logits, labels, camera_mask if self.use_camera_mask else None)
        if self.visible_weight > 0:
            losses["loss_occ_visible"] = self.visible_weight * occupancy_loss(
                logits, labels, camera_mask, self.class_weights)
            if self.lovasz_weight > 0:
                losses["loss_lovasz_visible"] = self.visible_weight * self.lovasz_weight * lovasz_softmax_loss(
                    logits, labels, camera_mask)
        if key_depth is not None:
            if sparse_depth is None:
                raise ValueError("the depth loss needs sparse_depth next to key_depth")
            losses["loss_depth"] = self.depth_weight * depth_loss(
                key_depth, sparse_depth, self.downsample, self.depth_bins
            )
        if key_seg_logits is not None:
            if seg_labels is None:
                raise ValueError("the image segmentation loss needs seg_labels next to key_seg_logits")
            losses["loss_seg"] = self.seg_weight * image_seg_loss(key_seg_logits, seg_labels)
        return losses
