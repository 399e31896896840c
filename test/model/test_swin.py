"""Swin backbone pieces against the original's formulations (relative index, nn.Unfold merging, shift
mask)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from fusionocc_core.model.swin import (
    PatchMerging,
    SwinTransformer,
    relative_position_index,
    shifted_window_mask,
    window_partition,
    window_reverse,
)


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    """One intra-op thread: small ops get slower, not faster, on a shared 2-core machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


SHARED = Path(__file__).resolve().parents[2].parent / "shared"
REDUCED_STATE = SHARED / "spec" / "reference" / "reduced_a" / "state_dict.pth"


def _original_relative_index(w: int) -> torch.Tensor:
    # The original builds it with a "double step sequence" and a flip; an independent formulation.
    seq1 = torch.arange(0, (2 * w - 1) * w, 2 * w - 1)
    seq2 = torch.arange(0, w)
    coords = (seq1[:, None] + seq2[None, :]).reshape(1, -1)
    return (coords + coords.T).flip(1)


@pytest.mark.parametrize("window", [2, 7, 12])
def test_relative_position_index_matches_original_formula(window: int) -> None:
    assert torch.equal(relative_position_index(window), _original_relative_index(window))


def test_relative_position_index_matches_reference_checkpoint() -> None:
    if not REDUCED_STATE.exists():
        pytest.skip("shared reference data not present")
    state = torch.load(REDUCED_STATE, weights_only=True)
    stored = [v for k, v in state.items() if k.endswith("relative_position_index")]
    assert len(stored) == 8
    for value in stored:
        assert torch.equal(value, relative_position_index(12))


def test_patch_merging_uses_unfold_channel_order() -> None:
    torch.manual_seed(0)
    b, h, w, c = 2, 6, 10, 3
    merge = PatchMerging(c, 2 * c)
    nn.init.normal_(merge.norm.weight)
    x = torch.randn(b, h * w, c)
    ours, hw = merge(x, (h, w))
    unfolded = nn.Unfold(kernel_size=2, stride=2)(x.view(b, h, w, c).permute(0, 3, 1, 2)).transpose(1, 2)
    expected = merge.reduction(merge.norm(unfolded))
    assert hw == (3, 5)
    torch.testing.assert_close(ours, expected)


def test_patch_merging_pads_odd_sizes() -> None:
    merge = PatchMerging(4, 8)
    out, hw = merge(torch.randn(1, 5 * 7, 4), (5, 7))
    assert hw == (3, 4) and out.shape == (1, 12, 8)


def test_window_partition_round_trip() -> None:
    x = torch.randn(2, 8, 12, 5)
    windows = window_partition(x, 4)
    assert windows.shape == (2 * 2 * 3, 16, 5)
    assert torch.equal(window_reverse(windows, 4, 8, 12), x)


def test_shift_mask_blocks_exactly_the_pairs_from_different_regions() -> None:
    h, w, ws, shift = 8, 8, 4, 2
    mask = shifted_window_mask(h, w, ws, shift, torch.device("cpu"))
    # Brute force: after the roll, two pixels of one window were neighbours in the original map iff both or
    # neither wrapped around, per axis (original index < shift means it wrapped to the far side).
    wrapped_r = (torch.arange(h).roll(-shift) < shift).long()
    wrapped_c = (torch.arange(w).roll(-shift) < shift).long()
    region = (wrapped_r[:, None] * 2 + wrapped_c[None, :]).float()
    labels = window_partition(region.view(1, h, w, 1), ws).squeeze(-1)
    expected = torch.where(labels[:, :, None] == labels[:, None, :], 0.0, -100.0)
    assert torch.equal(mask, expected)


def test_swin_output_shapes_and_padding_for_non_multiple_sizes() -> None:
    torch.manual_seed(0)
    model = SwinTransformer(
        embed_dim=8,
        depths=(2, 2, 2, 2),
        num_heads=(1, 1, 2, 2),
        window_size=4,
        out_indices=(2, 3),
        drop_path_rate=0.0,
    ).eval()
    outs = model(torch.randn(1, 3, 96, 160))  # stride-32 map 3x5: odd, padded in merging and windows
    assert [tuple(o.shape) for o in outs] == [(1, 32, 6, 10), (1, 64, 3, 5)]
    assert model.out_channels == (32, 64)
    assert all(torch.isfinite(o).all() for o in outs)


def test_swin_shift_changes_the_result() -> None:
    # A model whose odd blocks shift must differ from the same weights with shifting disabled.
    torch.manual_seed(0)
    model = SwinTransformer(
        embed_dim=8, depths=(2, 2, 2, 2), num_heads=(1, 1, 2, 2), window_size=4, drop_path_rate=0.0
    ).eval()
    x = torch.randn(1, 3, 128, 128)
    shifted = model(x)[0]
    for stage in model.stages:
        for block in stage.blocks:
            block.attn.shift_size = 0
    assert not torch.allclose(shifted, model(x)[0])


def test_swin_checkpointing_gives_same_gradients() -> None:
    torch.manual_seed(0)
    kwargs = dict(embed_dim=8, depths=(2, 2, 2, 2), num_heads=(1, 1, 2, 2), window_size=4, drop_path_rate=0.0)
    plain = SwinTransformer(**kwargs)
    ckpt = SwinTransformer(**kwargs, use_checkpoint=True)
    ckpt.load_state_dict(plain.state_dict())
    x = torch.randn(1, 3, 64, 64)
    sum(o.sum() for o in plain(x)).backward()
    sum(o.sum() for o in ckpt(x)).backward()
    for (name, p), q in zip(plain.named_parameters(), ckpt.parameters(), strict=True):
        torch.testing.assert_close(p.grad, q.grad, msg=name)


def test_swin_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match="num_heads"):
        SwinTransformer(embed_dim=8, depths=(2, 2), num_heads=(1, 1, 1))
    with pytest.raises(ValueError, match="out_indices"):
        SwinTransformer(embed_dim=8, depths=(2, 2), num_heads=(1, 1), out_indices=(2,))


def test_imagenet_conversion_reorders_patch_merging() -> None:
    from fusionocc_core.model.checkpoint_camera import convert_swin_imagenet_state_dict

    torch.manual_seed(0)
    c, out = 3, 5
    weight, norm_w, norm_b = torch.randn(out, 4 * c), torch.randn(4 * c), torch.randn(4 * c)
    x = torch.randn(1, 4, 6, c)
    # Microsoft's PatchMerging: concatenate x[0::2, 0::2], x[1::2, 0::2], x[0::2, 1::2], x[1::2, 1::2].
    cat = torch.cat([x[:, 0::2, 0::2], x[:, 1::2, 0::2], x[:, 0::2, 1::2], x[:, 1::2, 1::2]], -1).view(
        1, 6, 4 * c
    )
    expected = F.layer_norm(cat, (4 * c,), norm_w, norm_b) @ weight.T
    official = {
        "layers.0.downsample.reduction.weight": weight,
        "layers.0.downsample.norm.weight": norm_w,
        "layers.0.downsample.norm.bias": norm_b,
        "layers.0.blocks.1.attn_mask": torch.zeros(1),
        "head.weight": torch.zeros(1),
        "norm.weight": torch.zeros(1),
    }
    converted = convert_swin_imagenet_state_dict(official)
    assert set(converted) == {
        "stages.0.downsample.reduction.weight",
        "stages.0.downsample.norm.weight",
        "stages.0.downsample.norm.bias",
    }
    merge = PatchMerging(c, out)
    merge.load_state_dict({k.removeprefix("stages.0.downsample."): v for k, v in converted.items()})
    ours, _ = merge(x.view(1, 24, c), (4, 6))
    torch.testing.assert_close(ours, expected)


def test_imagenet_conversion_covers_a_full_model() -> None:
    from fusionocc_core.model.checkpoint_camera import convert_swin_imagenet_state_dict

    model = SwinTransformer(embed_dim=8, depths=(2, 2, 2, 2), num_heads=(1, 1, 2, 2), window_size=4)
    # Microsoft names for every tensor of our model (except the output norms, which ImageNet lacks).
    official = {}
    for key, value in model.state_dict().items():
        if key.startswith("norm"):
            continue
        name = key.replace("stages.", "layers.").replace("attn.w_msa.", "attn.").replace("projection", "proj")
        official[name.replace("ffn.layers.0.0.", "mlp.fc1.").replace("ffn.layers.1.", "mlp.fc2.")] = value
    converted = convert_swin_imagenet_state_dict(official)
    result = model.load_state_dict(converted, strict=False)
    assert sorted(result.missing_keys) == ["norm2.bias", "norm2.weight", "norm3.bias", "norm3.weight"]
    assert not result.unexpected_keys
