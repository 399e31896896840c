"""Sparse 3D lidar encoder (spconv 2.x): voxel features at 0.05 m -> dense (B, C, 16, 200, 200) volume.

Structure of the original (`lidar_encoder.*` keys of the published checkpoint):
  input_conv   SubM 1x1x1 in -> 16, no norm (here an nn.Linear on the voxel features, see below)
  stage 1      SubM 3 16, SubM 3 16, SparseConv 3 stride 2 16 -> 32   (each conv + BN1d + ReLU)
  stage 2      SubM 3 32 x2, SparseConv stride 2 32 -> 48
  stage 3      SubM 3 48 x2, SparseConv stride 2 48 -> 64
  stage 4      SubM 3 64 x2
  output_conv  SubM 1x1x1 64 -> out, no norm (nn.Linear as well)
BatchNorm1d eps 1e-3, momentum 0.01. Three stride-2 convs (kernel 3, padding 1) take the (128, 1600, 1600)
sparse grid to (16, 200, 200) = the occupancy grid.

Axis order: we index the sparse grid (batch, z, y, x), so `dense()` is already (B, C, Z, Y, X). The original
indexes (batch, x, y, z) and permutes after densifying; its kernels are thus stored (kx, ky, kz, Cin, Cout)
and the checkpoint conversion reorders them to spconv's (Cout, kz, ky, kx, Cin).

Why the 1x1x1 convs are nn.Linear: spconv 2.3's 1x1 fast path multiplies by `weight.view(Cin, Cout)` although
its weights are declared (Cout, 1, 1, 1, Cin), so a correctly permuted checkpoint gives wrong values there
(found by the reduced_a conformance case: every 3x3x3 layer matched, the 1x1 ones not). A 1x1x1 sparse conv
is a per-voxel linear map, so a plain nn.Linear on the features is exact and has no such quirk.

Two implementations of the sparse convs share the same modules and weights (the checkpoint layout stays
spconv's):
  * "spconv": spconv 2.x, MaskImplicitGemm on CUDA, Native on CPU.
  * "torch": `sparse_conv_cpu` (rulebooks built once per sweep + gather-GEMM-scatter in plain torch), the
    default on CPU: spconv's Native algorithm was the slowest part of the tiny preset there and degrades badly
    under CPU contention (docs/benchmarks.md, `fusionocc bench --suite lidar`).
`sparse_backend="auto"` picks by the input's device; "spconv" forces spconv on CPU too (for comparisons).
"""

from __future__ import annotations

import logging
import warnings
from typing import Literal, cast

import spconv.pytorch as spconv
import torch
from spconv.pytorch.conv import SparseConvolution
from torch import nn

from fusionocc_core.model.sparse_conv_cpu import (
    Rulebook,
    SparseSites,
    sparse_conv,
    strided_rulebook,
    submanifold_rulebook,
    to_dense,
)

# spconv 2.3's SparseConvTensor.dense() indexes with a list, which torch >= 2.9 deprecates with a UserWarning on
# every call (one per training step / frame). Harmless for the indices it builds; silenced for spconv only.
warnings.filterwarnings("ignore", message="Using a non-tuple sequence for multidimensional indexing",
                        category=UserWarning, module=r"spconv\.")


def _silence_spconv_fx_notice() -> None:
    """spconv's SparseConvTensor uses torch.fx's ProxyableClassMeta, whose first construction makes torch log
    an 'is_fx_tracing will return true ...' notice meant for torch.fx users (once per process, on stderr).
    It says nothing to ours: emit that once-only notice now with its logger muted."""
    from torch.fx import _symbolic_trace

    notice = getattr(_symbolic_trace, "is_fx_tracing_warning", None)
    if notice is None:  # a torch without the notice
        return
    logger = logging.getLogger(_symbolic_trace.__name__)
    disabled, logger.disabled = logger.disabled, True
    try:
        notice()  # functools.lru_cache: later calls (spconv's) log nothing
    finally:
        logger.disabled = disabled


_silence_spconv_fx_notice()

STAGE_CHANNELS = (16, 32, 48, 64)  # fixed in the original; only the output width is configurable


SparseBackend = Literal["auto", "spconv", "torch"]
SPARSE_BACKENDS: tuple[str, ...] = ("auto", "spconv", "torch")


def conv_algorithm_for(device: torch.device) -> spconv.ConvAlgo:
    """spconv algorithm: implicit GEMM on CUDA (fastest), Native on CPU (the only one that runs there)."""
    return spconv.ConvAlgo.MaskImplicitGemm if device.type == "cuda" else spconv.ConvAlgo.Native


def sparse_backend_for(device: torch.device, requested: str = "auto") -> str:
    """The sparse-conv implementation to run on `device`: spconv's implicit GEMM on CUDA, the torch rulebook
    path elsewhere (it beats spconv Native on CPU, see the module docstring); an explicit choice wins."""
    if requested not in SPARSE_BACKENDS:
        raise ValueError(f"unknown sparse backend '{requested}'; choose one of {SPARSE_BACKENDS}")
    if requested != "auto":
        return requested
    return "spconv" if device.type == "cuda" else "torch"


def check_torch_backend_support(module: nn.Module) -> None:
    """Raises NotImplementedError for a sparse conv the torch backend does not implement (dilation, groups,
    transposed / inverse convs): better refused at construction than computed differently from spconv."""
    for name, conv in module.named_modules():
        if not isinstance(conv, SparseConvolution):
            continue
        if (list(conv.dilation) != [1] * len(conv.dilation) or conv.groups != 1 or conv.transposed
                or conv.inverse or (conv.subm and any(k % 2 == 0 for k in conv.kernel_size))):
            raise NotImplementedError(
                f"{name}: the torch sparse backend supports dilation 1, groups 1, no transposed/inverse "
                "convs and odd submanifold kernels; use sparse_backend='spconv' for this layer"
            )


class SparseConvNormAct(nn.Module):
    """Sparse conv (no bias) + BatchNorm1d on the active features + ReLU."""

    def __init__(self, conv: SparseConvolution, channels: int) -> None:
        super().__init__()
        self.conv = conv
        self.norm = nn.BatchNorm1d(channels, eps=1e-3, momentum=0.01)
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: spconv.SparseConvTensor) -> spconv.SparseConvTensor:
        x = self.conv(x)
        return x.replace_feature(self.act(self.norm(x.features)))

    def forward_rulebook(self, features: torch.Tensor, rulebook: Rulebook) -> torch.Tensor:
        """The same block on plain (N, C) features through a prebuilt rulebook (the torch backend)."""
        norm = self.norm
        if norm.training or norm.running_mean is None or norm.running_var is None:
            out = norm(sparse_conv(features, rulebook, self.conv.weight, self.conv.bias))
            return self.act(out)
        # Inference: fold the BatchNorm into the conv (scale the weight's Cout, start the outputs at the
        # shift): exact up to rounding, and saves a pass over the features that BatchNorm1d makes slowly on
        # (N, C) inputs with few channels.
        scale = norm.weight / torch.sqrt(norm.running_var + norm.eps) if norm.affine else torch.rsqrt(
            norm.running_var + norm.eps)
        shift = -norm.running_mean * scale
        if norm.affine:
            shift = shift + norm.bias
        if self.conv.bias is not None:
            shift = shift + self.conv.bias * scale
        weight = self.conv.weight * scale.view(-1, 1, 1, 1, 1)
        return torch.relu_(sparse_conv(features, rulebook, weight, shift))


class LidarEncoder(nn.Module):
    """Sparse lidar encoder producing a dense volume on the occupancy grid.

    Args:
        in_channels: per-voxel feature width (5: x, y, z, intensity, time lag).
        out_channels: width of the output volume (32 in the published model).
        sparse_shape: (Z, Y, X) of the input sparse grid; each axis must be divisible by 8.
        stage_channels: widths of the four stages (fixed to (16, 32, 48, 64) in the original).
        conv_algorithm: spconv algorithm; None picks it from the input's device at every call
            (Native on CPU, MaskImplicitGemm on CUDA). Used where spconv runs (see `sparse_backend`).
        sparse_backend: "auto" (torch rulebooks on CPU, spconv on CUDA), "spconv" or "torch" (any device).
            A plain attribute: it may be changed between calls (the benchmark compares both on one model).
    """

    def __init__(
        self,
        in_channels: int = 5,
        out_channels: int = 32,
        sparse_shape: tuple[int, int, int] = (128, 1600, 1600),
        stage_channels: tuple[int, int, int, int] = STAGE_CHANNELS,
        conv_algorithm: spconv.ConvAlgo | None = None,
        sparse_backend: SparseBackend = "auto",
    ) -> None:
        super().__init__()
        if any(s % 8 for s in sparse_shape):
            raise ValueError(
                f"sparse_shape {sparse_shape} must be divisible by 8 on every axis (3 stride-2 convs)"
            )
        self.sparse_shape: tuple[int, int, int] = (sparse_shape[0], sparse_shape[1], sparse_shape[2])
        self.out_channels = out_channels
        self.conv_algorithm = conv_algorithm
        sparse_backend_for(torch.device("cpu"), sparse_backend)  # validates the name now
        self.sparse_backend: str = sparse_backend
        c1, c2, c3, c4 = stage_channels
        self.input_conv = nn.Linear(in_channels, c1, bias=False)  # = SubM 1x1x1

        def subm(channels: int, key: str) -> SparseConvNormAct:
            return SparseConvNormAct(
                spconv.SubMConv3d(channels, channels, 3, padding=1, bias=False, indice_key=key), channels
            )

        def down(cin: int, cout: int) -> SparseConvNormAct:
            return SparseConvNormAct(spconv.SparseConv3d(cin, cout, 3, stride=2, padding=1, bias=False), cout)

        self.stages = nn.ModuleList(
            [
                nn.Sequential(subm(c1, "subm1"), subm(c1, "subm1"), down(c1, c2)),
                nn.Sequential(subm(c2, "subm2"), subm(c2, "subm2"), down(c2, c3)),
                nn.Sequential(subm(c3, "subm3"), subm(c3, "subm3"), down(c3, c4)),
                nn.Sequential(subm(c4, "subm4"), subm(c4, "subm4")),
            ]
        )
        self.output_conv = nn.Linear(c4, out_channels, bias=False)  # = SubM 1x1x1
        check_torch_backend_support(self)
        self._algorithm_in_use: spconv.ConvAlgo | None = None

    @property
    def output_shape(self) -> tuple[int, int, int]:
        """(Z, Y, X) of the dense output volume."""
        z, y, x = self.sparse_shape
        return z // 8, y // 8, x // 8

    def _set_algorithm(self, device: torch.device) -> None:
        algo = self.conv_algorithm if self.conv_algorithm is not None else conv_algorithm_for(device)
        if algo == self._algorithm_in_use:
            return
        for module in self.modules():
            if isinstance(module, SparseConvolution):
                module.algo = algo  # the weight layout (Cout, k, k, k, Cin) is the same for every algorithm
        self._algorithm_in_use = algo

    def forward(self, features: torch.Tensor, coords: torch.Tensor, batch_size: int) -> torch.Tensor:
        """Encodes voxels into a dense volume.

        Args:
            features: (V, in_channels) voxel features.
            coords: (V, 4) int32 (batch, z, y, x) voxel indices inside `sparse_shape`.
            batch_size: number of samples.

        Returns:
            (B, out_channels, Z, Y, X) float32 dense volume, zero where no voxel is active.
        """
        # Sparse conv in fp32: spconv's Native CPU path has no half kernels; voxel means need the range.
        if sparse_backend_for(features.device, self.sparse_backend) == "torch":
            with torch.autocast(device_type=features.device.type, enabled=False):
                return self._forward_rulebook(features.float(), coords, batch_size)
        self._set_algorithm(features.device)
        with torch.autocast(device_type=features.device.type, enabled=False):
            x = spconv.SparseConvTensor(
                self.input_conv(features.float()), coords.int(), list(self.sparse_shape), batch_size
            )
            for stage in self.stages:
                x = stage(x)
            x = x.replace_feature(self.output_conv(x.features))
            return x.dense()  # (B, C, Z, Y, X)

    def _forward_rulebook(
        self, features: torch.Tensor, coords: torch.Tensor, batch_size: int
    ) -> torch.Tensor:
        """`forward` on the torch backend: one submanifold rulebook per `indice_key` and sweep (shared by the
        two SubM layers of each stage, as spconv shares its indice pairs), one rulebook per strided conv."""
        sites, order = SparseSites.from_coords(coords, self.sparse_shape, batch_size)
        x = self.input_conv(features)
        if order is not None:  # sites were unsorted: carry the features along
            x = x.index_select(0, order)
        shared: dict[str, tuple[SparseSites, Rulebook]] = {}
        for stage in self.stages:
            for block in cast(list[SparseConvNormAct], stage):
                conv = block.conv
                if conv.subm:
                    cached = shared.get(conv.indice_key) if conv.indice_key else None
                    if cached is None or cached[0] is not sites:
                        cached = (sites, submanifold_rulebook(sites, tuple(conv.kernel_size)))
                        if conv.indice_key:
                            shared[conv.indice_key] = cached
                    rulebook = cached[1]
                else:
                    sites, rulebook = strided_rulebook(sites, tuple(conv.kernel_size), tuple(conv.stride),
                                                       tuple(conv.padding))
                x = block.forward_rulebook(x, rulebook)
        return to_dense(self.output_conv(x), sites)
