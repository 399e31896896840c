"""Swin Transformer image backbone, numerically identical to the one FusionOcc ships (BEVDet's copy of
mmseg/mmdet's SwinTransformer): non-overlapping 4x4 patch embedding + LayerNorm, (shifted) window attention
with
relative position bias, padding to window multiples, nn.Unfold-ordered patch merging, a LayerNorm per output.

Differences from timm that matter for loading weights:
- patch merging concatenates the 2x2 neighbours in nn.Unfold order (channel-major: index = c * 4 + kh * 2 +
kw),
  timm uses [x(0,0), x(1,0), x(0,1), x(1,1)] blocks of C channels;
- the shifted-window attention mask uses -100 (not -inf) and is built on the padded map;
- the window size is never clamped to the feature size (small maps are padded up to one window).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
import torch.utils.checkpoint
from torch import nn


def drop_path(x: torch.Tensor, drop_prob: float, training: bool) -> torch.Tensor:
    """Stochastic depth per sample (the residual branch is zeroed for a random subset of the batch)."""
    if drop_prob == 0.0 or not training:
        return x
    keep_prob = 1.0 - drop_prob
    shape = (x.shape[0],) + (1,) * (x.ndim - 1)
    mask = x.new_empty(shape).bernoulli_(keep_prob)
    return x * mask / keep_prob


class DropPath(nn.Module):
    """Stochastic depth as a module (identity in eval mode)."""

    def __init__(self, drop_prob: float) -> None:
        super().__init__()
        self.drop_prob = drop_prob

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return drop_path(x, self.drop_prob, self.training)


def relative_position_index(window_size: int) -> torch.Tensor:
    """Index into the (2w-1)^2 bias table for every (query, key) pair of a w x w window, shape (w*w, w*w).

    Same values as the original's `relative_position_index` buffer (built there with a flip trick).
    """
    coords = torch.stack(torch.meshgrid(torch.arange(window_size), torch.arange(window_size), indexing="ij"))
    coords = coords.flatten(1)  # (2, w*w)
    rel = coords[:, :, None] - coords[:, None, :]  # (2, w*w, w*w)
    rel = rel + (window_size - 1)
    return rel[0] * (2 * window_size - 1) + rel[1]


def window_partition(x: torch.Tensor, window_size: int) -> torch.Tensor:
    """(B, H, W, C) -> (B * nW, window_size * window_size, C); H, W multiples of window_size."""
    b, h, w, c = x.shape
    x = x.view(b, h // window_size, window_size, w // window_size, window_size, c)
    return x.permute(0, 1, 3, 2, 4, 5).reshape(-1, window_size * window_size, c)


def window_reverse(windows: torch.Tensor, window_size: int, height: int, width: int) -> torch.Tensor:
    """(B * nW, window_size * window_size, C) -> (B, H, W, C)."""
    c = windows.shape[-1]
    b = windows.shape[0] // ((height // window_size) * (width // window_size))
    x = windows.view(b, height // window_size, width // window_size, window_size, window_size, c)
    return x.permute(0, 1, 3, 2, 4, 5).reshape(b, height, width, c)


def shifted_window_mask(
    height: int, width: int, window_size: int, shift: int, device: torch.device
) -> torch.Tensor:
    """Attention mask (nW, w*w, w*w) with 0 inside a region and -100 across regions of the rolled padded
    map."""
    img_mask = torch.zeros((1, height, width, 1), device=device)
    slices = (slice(0, -window_size), slice(-window_size, -shift), slice(-shift, None))
    region = 0
    for hs in slices:
        for ws in slices:
            img_mask[:, hs, ws, :] = region
            region += 1
    mask_windows = window_partition(img_mask, window_size).squeeze(-1)  # (nW, w*w)
    attn_mask = mask_windows.unsqueeze(1) - mask_windows.unsqueeze(2)
    return attn_mask.masked_fill(attn_mask != 0, -100.0).masked_fill(attn_mask == 0, 0.0)


class WindowAttention(nn.Module):
    """Multi-head self-attention inside windows with a learned relative position bias."""

    relative_position_index: torch.Tensor  # (N, N) buffer

    def __init__(
        self,
        dim: int,
        num_heads: int,
        window_size: int,
        qkv_bias: bool = True,
        attn_drop: float = 0.0,
        proj_drop: float = 0.0,
    ) -> None:
        super().__init__()
        if dim % num_heads != 0:
            raise ValueError(f"Swin: dim {dim} is not divisible by num_heads {num_heads}.")
        self.num_heads = num_heads
        self.window_size = window_size
        self.scale = (dim // num_heads) ** -0.5
        self.relative_position_bias_table = nn.Parameter(torch.zeros((2 * window_size - 1) ** 2, num_heads))
        # Derived from window_size alone, so not stored in checkpoints (the original stores it; the
        # conversion checks and drops it).
        self.register_buffer(
            "relative_position_index", relative_position_index(window_size), persistent=False
        )
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.attn_drop = nn.Dropout(attn_drop)
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)
        nn.init.trunc_normal_(self.relative_position_bias_table, std=0.02)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        bw, n, c = x.shape
        nh = self.num_heads
        qkv = self.qkv(x).reshape(bw, n, 3, nh, c // nh).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]  # (B*nW, nh, N, hd)
        bias = self.relative_position_bias_table[self.relative_position_index.view(-1)].view(n, n, nh)
        bias = bias.permute(2, 0, 1).unsqueeze(0)  # (1, nh, N, N)
        if mask is not None:
            # Windows of one image share the mask: fold them into the head axis so one (1, nW*nh, N, N) bias
            # broadcasts over the images instead of materialising a (B*nW, nh, N, N) one.
            nw = mask.shape[0]
            bias = (bias + mask.unsqueeze(1)).reshape(1, nw * nh, n, n)  # (1, nW*nh, N, N)
            q, k, v = (t.reshape(bw // nw, nw * nh, n, -1) for t in (q, k, v))  # (B, nW*nh, N, hd)
        # Same math as softmax(q * scale @ k^T + bias) @ v; fused kernels where the device has them.
        drop = self.attn_drop.p if self.training else 0.0
        x = F.scaled_dot_product_attention(
            q, k, v, attn_mask=bias.to(q.dtype), dropout_p=drop, scale=self.scale
        )
        x = x.reshape(bw, nh, n, -1).transpose(1, 2).reshape(bw, n, c)  # (B*nW, N, C)
        return self.proj_drop(self.proj(x))


class ShiftedWindowAttention(nn.Module):
    """Pads the map to window multiples, optionally rolls it by shift, attends within windows, undoes both.

    The attention module is called `w_msa` as in the original so that state-dict names line up.
    """

    def __init__(
        self,
        dim: int,
        num_heads: int,
        window_size: int,
        shift_size: int,
        qkv_bias: bool,
        attn_drop: float,
        proj_drop: float,
    ) -> None:
        super().__init__()
        if not 0 <= shift_size < window_size:
            raise ValueError(f"Swin: shift_size {shift_size} must be in [0, window_size={window_size}).")
        self.window_size = window_size
        self.shift_size = shift_size
        self.w_msa = WindowAttention(dim, num_heads, window_size, qkv_bias, attn_drop, proj_drop)

    def forward(self, x: torch.Tensor, hw_shape: tuple[int, int]) -> torch.Tensor:
        b, length, c = x.shape
        h, w = hw_shape
        ws = self.window_size
        x = x.view(b, h, w, c)
        pad_r = (ws - w % ws) % ws
        pad_b = (ws - h % ws) % ws
        x = F.pad(x, (0, 0, 0, pad_r, 0, pad_b))
        hp, wp = x.shape[1], x.shape[2]
        mask = None
        if self.shift_size > 0:
            x = torch.roll(x, shifts=(-self.shift_size, -self.shift_size), dims=(1, 2))
            mask = shifted_window_mask(hp, wp, ws, self.shift_size, x.device).to(x.dtype)
        windows = self.w_msa(window_partition(x, ws), mask)  # (B*nW, ws*ws, C)
        x = window_reverse(windows, ws, hp, wp)  # (B, Hp, Wp, C)
        if self.shift_size > 0:
            x = torch.roll(x, shifts=(self.shift_size, self.shift_size), dims=(1, 2))
        return x[:, :h, :w, :].reshape(b, length, c)


class FeedForward(nn.Module):
    """Linear-GELU-Linear; attribute names (`layers.0.0`, `layers.1`) follow mmcv's FFN for loading."""

    def __init__(self, dim: int, hidden_dim: int, drop: float) -> None:
        super().__init__()
        self.layers = nn.Sequential(
            nn.Sequential(nn.Linear(dim, hidden_dim), nn.GELU(), nn.Dropout(drop)),
            nn.Linear(hidden_dim, dim),
            nn.Dropout(drop),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


class SwinBlock(nn.Module):
    """Pre-norm transformer block: x + attn(LN(x)), then x + ffn(LN(x)), each with stochastic depth."""

    def __init__(
        self,
        dim: int,
        num_heads: int,
        window_size: int,
        shift: bool,
        mlp_ratio: float,
        qkv_bias: bool,
        drop: float,
        attn_drop: float,
        drop_path_prob: float,
    ) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = ShiftedWindowAttention(
            dim, num_heads, window_size, window_size // 2 if shift else 0, qkv_bias, attn_drop, drop
        )
        self.norm2 = nn.LayerNorm(dim)
        self.ffn = FeedForward(dim, int(mlp_ratio * dim), drop)
        self.drop_path = DropPath(drop_path_prob)

    def forward(self, x: torch.Tensor, hw_shape: tuple[int, int]) -> torch.Tensor:
        x = x + self.drop_path(self.attn(self.norm1(x), hw_shape))
        return x + self.drop_path(self.ffn(self.norm2(x)))


class PatchMerging(nn.Module):
    """2x2 neighbourhood -> LayerNorm(4C) -> Linear(4C, 2C) in nn.Unfold channel order (see module
    docstring)."""

    def __init__(self, dim: int, out_dim: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(4 * dim)
        self.reduction = nn.Linear(4 * dim, out_dim, bias=False)

    def forward(self, x: torch.Tensor, hw_shape: tuple[int, int]) -> tuple[torch.Tensor, tuple[int, int]]:
        b, _, c = x.shape
        h, w = hw_shape
        x = x.view(b, h, w, c)
        x = F.pad(x, (0, 0, 0, w % 2, 0, h % 2))  # odd sizes get one zero row/column, as the original
        hp, wp = x.shape[1], x.shape[2]
        x = x.view(b, hp // 2, 2, wp // 2, 2, c).permute(0, 1, 3, 5, 2, 4)  # (B, H/2, W/2, C, kh, kw)
        x = x.reshape(b, (hp // 2) * (wp // 2), 4 * c)  # channel index c * 4 + kh * 2 + kw, like nn.Unfold
        return self.reduction(self.norm(x)), (hp // 2, wp // 2)


class SwinStage(nn.Module):
    """`depth` blocks alternating regular and shifted windows, then optional patch merging."""

    def __init__(
        self,
        dim: int,
        depth: int,
        num_heads: int,
        window_size: int,
        mlp_ratio: float,
        qkv_bias: bool,
        drop: float,
        attn_drop: float,
        drop_path_probs: list[float],
        downsample: bool,
        use_checkpoint: bool,
    ) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(
            SwinBlock(
                dim,
                num_heads,
                window_size,
                i % 2 == 1,
                mlp_ratio,
                qkv_bias,
                drop,
                attn_drop,
                drop_path_probs[i],
            )
            for i in range(depth)
        )
        self.downsample = PatchMerging(dim, 2 * dim) if downsample else None
        self.use_checkpoint = use_checkpoint

    def forward(
        self, x: torch.Tensor, hw_shape: tuple[int, int]
    ) -> tuple[torch.Tensor, tuple[int, int], torch.Tensor]:
        """Returns (input of the next stage, its (H, W), this stage's output before merging)."""
        for block in self.blocks:
            if self.use_checkpoint and x.requires_grad:
                x = torch.utils.checkpoint.checkpoint(block, x, hw_shape, use_reentrant=False)
            else:
                x = block(x, hw_shape)
        if self.downsample is None:
            return x, hw_shape, x
        x_down, down_hw = self.downsample(x, hw_shape)
        return x_down, down_hw, x


class PatchEmbed(nn.Module):
    """Conv patch embedding (kernel = stride = patch_size) after zero-padding to patch multiples, +
    LayerNorm."""

    def __init__(self, in_channels: int, embed_dim: int, patch_size: int) -> None:
        super().__init__()
        self.patch_size = patch_size
        self.projection = nn.Conv2d(in_channels, embed_dim, kernel_size=patch_size, stride=patch_size)
        self.norm = nn.LayerNorm(embed_dim)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int]]:
        p = self.patch_size
        h, w = x.shape[-2:]
        x = F.pad(x, (0, (p - w % p) % p, 0, (p - h % p) % p))
        x = self.projection(x)  # (B, C, H/p, W/p)
        hw = (x.shape[2], x.shape[3])
        return self.norm(x.flatten(2).transpose(1, 2)), hw  # (B, H/p*W/p, C)


class SwinTransformer(nn.Module):
    """Swin backbone returning the LayerNorm-ed maps of `out_indices` stages as (B, C, H, W).

    Args:
        embed_dim: Channels of stage 0 (doubled at every stage).
        depths: Blocks per stage.
        num_heads: Attention heads per stage.
        window_size: Attention window (12 in FusionOcc).
        out_indices: Stages to return; FusionOcc uses (2, 3): strides 16 and 32.
        mlp_ratio: FFN hidden width / dim.
        drop_path_rate: Stochastic depth, linearly increasing over all blocks from 0 to this value.
        patch_size: Patch embedding stride.
        in_channels: Image channels.
        qkv_bias: Bias in the qkv projection.
        use_checkpoint: Recompute blocks in backward to save memory (the original does this by default).
    """

    def __init__(
        self,
        embed_dim: int = 128,
        depths: tuple[int, ...] = (2, 2, 18, 2),
        num_heads: tuple[int, ...] = (4, 8, 16, 32),
        window_size: int = 12,
        out_indices: tuple[int, ...] = (2, 3),
        mlp_ratio: float = 4.0,
        drop_path_rate: float = 0.1,
        patch_size: int = 4,
        in_channels: int = 3,
        qkv_bias: bool = True,
        use_checkpoint: bool = False,
    ) -> None:
        super().__init__()
        if len(depths) != len(num_heads):
            raise ValueError(f"Swin: depths {depths} and num_heads {num_heads} differ in length.")
        if any(i < 0 or i >= len(depths) for i in out_indices):
            raise ValueError(f"Swin: out_indices {out_indices} outside 0..{len(depths) - 1}.")
        self.out_indices = tuple(out_indices)
        self.num_features = tuple(embed_dim * 2**i for i in range(len(depths)))
        self.patch_embed = PatchEmbed(in_channels, embed_dim, patch_size)
        dpr = torch.linspace(0, drop_path_rate, sum(depths), device="cpu").tolist()  # cpu: builds on meta too
        self.stages = nn.ModuleList()
        for i, depth in enumerate(depths):
            start = sum(depths[:i])
            self.stages.append(
                SwinStage(
                    self.num_features[i],
                    depth,
                    num_heads[i],
                    window_size,
                    mlp_ratio,
                    qkv_bias,
                    0.0,
                    0.0,
                    dpr[start : start + depth],
                    downsample=i < len(depths) - 1,
                    use_checkpoint=use_checkpoint,
                )
            )
        for i in self.out_indices:
            self.add_module(f"norm{i}", nn.LayerNorm(self.num_features[i]))
        self.apply(self._init_weights)

    @staticmethod
    def _init_weights(m: nn.Module) -> None:
        if isinstance(m, nn.Linear):
            nn.init.trunc_normal_(m.weight, std=0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.LayerNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)

    @property
    def out_channels(self) -> tuple[int, ...]:
        """Channels of the returned maps."""
        return tuple(self.num_features[i] for i in self.out_indices)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """(B, 3, H, W) -> [(B, C_i, H / s_i, W / s_i) for i in out_indices]."""
        x, hw = self.patch_embed(x)  # (B, L, C)
        outs = []
        for i, stage in enumerate(self.stages):
            x, next_hw, out = stage(x, hw)
            if i in self.out_indices:
                out = getattr(self, f"norm{i}")(out)
                outs.append(out.view(-1, hw[0], hw[1], self.num_features[i]).permute(0, 3, 1, 2).contiguous())
            hw = next_hw
        return outs
