"""Losses against hand computations."""

import math

import pytest
import torch

from fusionocc_core.model.losses import (
    FusionOccLoss,
    depth_loss,
    enet_class_weights,
    image_seg_loss,
    lovasz_softmax_loss,
    occupancy_loss,
)


def test_occupancy_loss_plain_and_camera_masked():
    logits = torch.zeros(1, 2, 1, 1, 3)
    logits[0, 0, 0, 0] = torch.tensor([2.0, 0.0, 0.0])
    labels = torch.tensor([[[[0]], [[1]]]])  # (1, 2, 1, 1)
    ce0 = -math.log(math.exp(2) / (math.exp(2) + 2))
    ce1 = -math.log(1 / 3)
    assert occupancy_loss(logits, labels).item() == pytest.approx((ce0 + ce1) / 2, rel=1e-6)
    mask = torch.tensor([[[[1]], [[0]]]])
    assert occupancy_loss(logits, labels, mask).item() == pytest.approx(ce0, rel=1e-6)
    assert occupancy_loss(logits, labels, torch.zeros_like(mask)).item() == 0.0
    with pytest.raises(ValueError, match="do not match"):
        occupancy_loss(logits, labels[..., 0])


def test_occupancy_loss_with_class_weights_plain_and_masked():
    logits = torch.zeros(1, 3, 1, 1, 3)
    logits[0, 0, 0, 0] = torch.tensor([2.0, 0.0, 0.0])
    labels = torch.tensor([[[[0]], [[1]], [[1]]]])  # (1, 3, 1, 1)
    ce0 = -math.log(math.exp(2) / (math.exp(2) + 2))
    ce1 = -math.log(1 / 3)
    weights = torch.tensor([4.0, 1.0, 7.0])
    expected = (4 * ce0 + 1 * ce1 + 1 * ce1) / (4 + 1 + 1)
    assert occupancy_loss(logits, labels, class_weights=weights).item() == pytest.approx(expected, rel=1e-6)
    mask = torch.tensor([[[[1]], [[1]], [[0]]]])
    expected_masked = (4 * ce0 + 1 * ce1) / (4 + 1)
    assert occupancy_loss(logits, labels, mask, weights).item() == pytest.approx(expected_masked, rel=1e-6)
    # the same through FusionOccLoss, and equal weights change nothing
    loss = FusionOccLoss(use_camera_mask=True, class_weights=weights)
    assert loss(logits, labels, mask)["loss_occ"].item() == pytest.approx(expected_masked, rel=1e-6)
    assert "class_weights" not in loss.state_dict()  # not a model parameter: checkpoints stay loadable
    assert occupancy_loss(logits, labels, class_weights=torch.full((3,), 2.5)).item() == pytest.approx(
        occupancy_loss(logits, labels).item(), rel=1e-6)
    with pytest.raises(ValueError, match="class_weights .* do not match the 3 classes"):
        occupancy_loss(logits, labels, class_weights=torch.ones(18))


def test_enet_class_weights_against_the_formula():
    counts = torch.tensor([900.0, 90.0, 10.0, 0.0])
    expected = [1 / math.log(1.02 + p) for p in (0.9, 0.09, 0.01, 0.0)]
    assert enet_class_weights(counts).tolist() == pytest.approx(expected, rel=1e-6)
    assert enet_class_weights(counts)[3].item() == pytest.approx(1 / math.log(1.02), rel=1e-6)  # the ceiling
    assert enet_class_weights(counts, c=1.2).tolist() == pytest.approx(
        [1 / math.log(1.2 + p) for p in (0.9, 0.09, 0.01, 0.0)], rel=1e-6)
    with pytest.raises(ValueError, match="positive sum"):
        enet_class_weights(torch.zeros(3))
    with pytest.raises(ValueError, match="non-negative"):
        enet_class_weights(torch.tensor([1.0, -1.0]))
    with pytest.raises(ValueError, match="must be > 1"):
        enet_class_weights(counts, c=1.0)


def test_depth_loss_only_over_patches_with_lidar():
    bins = (1.0, 45.0, 0.5)
    sparse = torch.zeros(1, 1, 32, 16)  # two 16 x 16 patches; only the top one has points
    sparse[0, 0, 3, 4] = 10.2
    sparse[0, 0, 5, 9] = (
        20.0  # the minimum depth of the patch wins: 10.2 -> bin int((10.2 - 0.5) / 0.5) - 1 = 18
    )
    probs = torch.full((1, 88, 2, 1), 1.0 / 88)
    loss = depth_loss(probs, sparse, downsample=16, depth_bins=bins)
    expected = -(math.log(1 / 88) + 87 * math.log(1 - 1 / 88))  # BCE summed over bins of one valid patch
    assert loss.item() == pytest.approx(expected, rel=1e-5)
    sharp = probs.clone()
    sharp[0, :, 0, 0] = 1e-6
    sharp[0, 18, 0, 0] = 1 - 87e-6
    assert depth_loss(sharp, sparse, 16, bins).item() < 1e-3
    assert depth_loss(probs, torch.zeros_like(sparse), 16, bins).item() == 0.0


def test_image_seg_loss_samples_patches_and_ignores_free():
    logits = torch.zeros(1, 18, 1, 2)
    logits[0, 5, 0, 0] = 3.0
    labels = torch.full((1, 1, 16, 32), 17)
    labels[0, 0, 0, 0] = 5  # top-left pixel of patch 0 is labelled; patch 1 stays "free" -> ignored
    labels[0, 0, 1, 16] = 4  # not a sampled pixel
    expected = -math.log(math.exp(3) / (math.exp(3) + 17))
    assert image_seg_loss(logits, labels).item() == pytest.approx(expected, rel=1e-6)
    assert image_seg_loss(logits, torch.full_like(labels, 17)).item() == 0.0


def test_fusion_occ_loss_weights_and_requirements():
    torch.manual_seed(0)
    logits = torch.randn(1, 2, 2, 1, 18)
    labels = torch.randint(0, 18, (1, 2, 2, 1))
    depth = torch.softmax(torch.randn(6, 88, 1, 1), dim=1)
    sparse = torch.zeros(1, 6, 16, 16)
    sparse[0, :, 2, 2] = 7.0
    seg = torch.randn(6, 18, 1, 1)
    seg_labels = torch.randint(0, 17, (1, 6, 16, 16))
    losses = FusionOccLoss()(
        logits, labels, key_depth=depth, sparse_depth=sparse, key_seg_logits=seg, seg_labels=seg_labels
    )
    assert losses["loss_depth"].item() == pytest.approx(
        0.1 * depth_loss(depth, sparse, 16, (1.0, 45.0, 0.5)).item()
    )
    assert losses["loss_seg"].item() == pytest.approx(0.1 * image_seg_loss(seg, seg_labels).item())
    assert set(FusionOccLoss()(logits, labels)) == {"loss_occ"}
    with pytest.raises(ValueError, match="camera_mask"):
        FusionOccLoss(use_camera_mask=True)(logits, labels)


def _jaccard_loss_of_set(wrong: set[int], members: set[int]) -> float:
    """Berman et al.'s set function: |M| / |F u M| for the mispredicted set M and the class's voxels F."""
    return len(wrong) / len(members | wrong) if members | wrong else 0.0


def _lovasz_by_definition(probs: torch.Tensor, labels: torch.Tensor) -> float:
    """The Lovasz extension written out from its definition with Python sets (no cumulative sums)."""
    terms = []
    for c in sorted(set(labels.tolist())):
        members = {i for i, label in enumerate(labels.tolist()) if label == c}
        errors = [abs((1.0 if i in members else 0.0) - float(probs[i, c])) for i in range(len(labels))]
        order = sorted(range(len(errors)), key=lambda i: -errors[i])
        total, previous = 0.0, 0.0
        for k in range(len(order)):
            current = _jaccard_loss_of_set(set(order[: k + 1]), members)
            total += errors[order[k]] * (current - previous)
            previous = current
        terms.append(total)
    return sum(terms) / len(terms)


def test_lovasz_softmax_matches_its_definition_on_soft_probabilities():
    torch.manual_seed(3)
    logits = torch.randn(1, 4, 3, 2, 5)
    labels = torch.randint(0, 4, (1, 4, 3, 2))  # class 4 absent: it must not take part
    expected = _lovasz_by_definition(logits.reshape(-1, 5).softmax(-1), labels.reshape(-1))
    assert lovasz_softmax_loss(logits, labels).item() == pytest.approx(expected, rel=1e-5)


def test_lovasz_softmax_is_one_minus_iou_on_hard_predictions_and_respects_the_mask():
    torch.manual_seed(4)
    labels = torch.randint(0, 3, (2, 5, 5, 2))
    predicted = torch.where(torch.rand(labels.shape) < 0.3, torch.randint(0, 4, labels.shape), labels)
    logits = 80.0 * torch.nn.functional.one_hot(predicted, 4).float()  # softmax is one-hot to 1e-34
    mask = (torch.rand(labels.shape) < 0.6).float()

    def mean_jaccard_loss(keep: torch.Tensor) -> float:
        gt, pred = labels[keep], predicted[keep]
        losses = [1 - float(((gt == c) & (pred == c)).sum()) / float(((gt == c) | (pred == c)).sum())
                  for c in torch.unique(gt).tolist()]
        return sum(losses) / len(losses)

    everything = torch.ones_like(labels, dtype=torch.bool)
    assert lovasz_softmax_loss(logits, labels).item() == pytest.approx(mean_jaccard_loss(everything), abs=1e-6)
    assert lovasz_softmax_loss(logits, labels, mask).item() == pytest.approx(mean_jaccard_loss(mask > 0),
                                                                             abs=1e-6)
    assert lovasz_softmax_loss(80.0 * torch.nn.functional.one_hot(labels, 4).float(), labels).item() == \
        pytest.approx(0.0, abs=1e-6)
    assert lovasz_softmax_loss(logits, labels, torch.zeros_like(mask)).item() == 0.0


def test_lovasz_softmax_gradient_descent_raises_the_iou_of_a_rare_class():
    torch.manual_seed(5)
    labels = torch.zeros(1, 20, 20, 1, dtype=torch.long)
    labels[0, :2, :2] = 1  # 4 of 400 voxels
    logits = torch.zeros(1, 20, 20, 1, 2)
    logits[..., 0] = 2.0  # starts predicting the majority class everywhere
    logits.requires_grad_(True)
    optimizer = torch.optim.SGD([logits], lr=50.0)
    first = None
    for _ in range(30):
        loss = lovasz_softmax_loss(logits, labels)
        first = first if first is not None else loss.item()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    predicted = logits.argmax(-1)
    assert loss.item() < 0.5 * first
    assert bool((predicted[labels == 1] == 1).all()) and int((predicted == 1).sum()) == 4


def test_fusion_occ_loss_adds_the_weighted_lovasz_term_on_the_masked_voxels():
    torch.manual_seed(6)
    logits = torch.randn(1, 3, 3, 2, 18)
    labels = torch.randint(0, 18, (1, 3, 3, 2))
    mask = (torch.rand(labels.shape) < 0.5).float()
    assert "loss_lovasz" not in FusionOccLoss()(logits, labels)
    losses = FusionOccLoss(use_camera_mask=True, lovasz_weight=0.5)(logits, labels, mask)
    assert losses["loss_lovasz"].item() == pytest.approx(0.5 * lovasz_softmax_loss(logits, labels, mask).item())
    unmasked = FusionOccLoss(lovasz_weight=1.0)(logits, labels, mask)
    assert unmasked["loss_lovasz"].item() == pytest.approx(lovasz_softmax_loss(logits, labels).item())
    with pytest.raises(ValueError, match="lovasz_weight"):
        FusionOccLoss(lovasz_weight=-1.0)


def test_fusion_occ_loss_visible_terms_repeat_the_loss_over_camera_visible_voxels():
    torch.manual_seed(7)
    logits = torch.randn(1, 4, 3, 2, 18)
    labels = torch.randint(0, 18, (1, 4, 3, 2))
    mask = (torch.rand(labels.shape) < 0.3).float()
    weights = torch.rand(18) + 0.5
    losses = FusionOccLoss(class_weights=weights, lovasz_weight=0.5, visible_weight=2.0)(logits, labels, mask)
    # the all-voxel terms are those of the loss without the option
    assert losses["loss_occ"].item() == pytest.approx(occupancy_loss(logits, labels, None, weights).item())
    assert losses["loss_lovasz"].item() == pytest.approx(0.5 * lovasz_softmax_loss(logits, labels).item())
    assert losses["loss_occ_visible"].item() == pytest.approx(
        2.0 * occupancy_loss(logits, labels, mask, weights).item())
    assert losses["loss_lovasz_visible"].item() == pytest.approx(
        2.0 * 0.5 * lovasz_softmax_loss(logits, labels, mask).item())
    assert losses["loss_occ_visible"].item() != pytest.approx(2.0 * losses["loss_occ"].item())
    # a voxel outside the mask gets its gradient only from the all-voxel terms
    outside = int((mask.reshape(-1) == 0).nonzero()[0])

    def gradient_outside(visible_weight: float) -> torch.Tensor:
        leaf = logits.clone().requires_grad_(True)
        sum(FusionOccLoss(visible_weight=visible_weight)(leaf, labels, mask).values()).backward()
        return leaf.grad.reshape(-1, 18)[outside]

    assert torch.allclose(gradient_outside(3.0), gradient_outside(0.0))
    assert set(FusionOccLoss(visible_weight=1.0)(logits, labels, mask)) == {"loss_occ", "loss_occ_visible"}
    with pytest.raises(ValueError, match="needs camera_mask"):
        FusionOccLoss(visible_weight=1.0)(logits, labels)
    with pytest.raises(ValueError, match="with use_camera_mask there is no all-voxel loss"):
        FusionOccLoss(use_camera_mask=True, visible_weight=1.0)
    with pytest.raises(ValueError, match="visible_weight must be >= 0"):
        FusionOccLoss(visible_weight=-0.5)


def test_lovasz_softmax_equals_the_per_class_form_in_value_and_gradient():
    """The loss sorts every present class's errors in one batched sort; Berman et al.'s reference code loops over
    the classes. Same value and gradient on a grid big enough for ties and absent classes."""
    torch.manual_seed(11)
    logits = torch.randn(1, 20, 20, 6, 7, requires_grad=True)
    labels = torch.randint(0, 5, (1, 20, 20, 6))  # classes 5 and 6 absent
    mask = (torch.rand(labels.shape) < 0.7).float()

    def per_class(lg: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        probs = lg.reshape(-1, 7).softmax(-1)[keep.reshape(-1) > 0]
        flat = labels.reshape(-1)[keep.reshape(-1) > 0]
        terms = []
        for c in torch.unique(flat).tolist():
            member = (flat == c).to(probs.dtype)
            errors_sorted, order = torch.sort((member - probs[:, c]).abs(), descending=True)
            gt = member[order]
            jaccard = 1.0 - (gt.sum() - gt.cumsum(0)) / (gt.sum() + (1.0 - gt).cumsum(0))
            jaccard = torch.cat([jaccard[:1], jaccard[1:] - jaccard[:-1]])
            terms.append(torch.dot(errors_sorted, jaccard))
        return torch.stack(terms).mean()

    for keep in (torch.ones_like(mask), mask):
        ours = lovasz_softmax_loss(logits, labels, keep)
        (grad_ours,) = torch.autograd.grad(ours, logits)
        reference = per_class(logits, keep)
        (grad_reference,) = torch.autograd.grad(reference, logits)
        assert ours.item() == pytest.approx(reference.item(), rel=1e-6)
        torch.testing.assert_close(grad_ours, grad_reference)
