"""`Conv3d`: nn.Conv3d that gets CPU float32 convolutions onto oneDNN, forward and backward.

PyTorch's CPU dispatcher picks its slow reference kernel (`slow_conv3d`) for a float32 3D convolution when
batch x channels x the first two spatial sizes is small (<= 20480), in forward and again in backward. On the
occupancy grid (B, C, Z=16, Y=200, X=200) with batch 1 that is most of our 3D layers. The convolution does not
care in which order the spatial axes come, so this wrapper calls oneDNN (`torch.mkldnn_convolution`) on the
volume with its largest spatial axes first (kernel, stride, padding, dilation permuted alike) in channels_last_3d
memory format; the gradients, for which ATen chooses the kernel again from those shapes, then run on oneDNN's
blocked kernels too. Without gradients the convolution runs on oneDNN in the layout it comes in: the permuted
copies only cost time there (node bench, fast preset: 12.9 s per frame with them, 9.7 s without). Measured on the
development machine (2 threads, forward / backward): 4 -> 4 channels 3x3x3 over 200 x 200 x 16 129 / 259 ms
through nn.Conv3d vs 10 / 24 ms; 16 -> 16 at 100 x 100 x 8 62 / 117 vs 4 / 8 ms; 32 -> 32 at 50 x 50 x 4 8 / 34
vs 2 / 5 ms. Outputs and gradients equal nn.Conv3d's to float32 rounding (test/model/test_conv3d.py). Same
parameters and state-dict keys as nn.Conv3d; every other case (CUDA, half precision, other padding modes) is
nn.Conv3d's own path.
"""
from __future__ import annotations

import torch
from torch import nn


def _largest_first(shape: torch.Size) -> list[int]:
    """Permutation of a (B, C, D0, D1, D2) tensor that puts the spatial axes in decreasing size (stable)."""
    order = sorted(range(3), key=lambda i: -shape[2 + i])
    return [0, 1] + [2 + i for i in order]


class Conv3d(nn.Conv3d):
    def _conv_forward(self, input: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        if (
            input.device.type == "cpu"
            and input.dtype == torch.float32
            and weight.dtype == torch.float32
            and input.dim() == 5
            and self.padding_mode == "zeros"
            and not isinstance(self.padding, str)
            and torch.backends.mkldnn.is_available()
        ):
            if not (torch.is_grad_enabled() and (input.requires_grad or weight.requires_grad)):
                # inference: oneDNN on the layout as it comes (the permuted copy would only cost time here)
                return torch.mkldnn_convolution(input, weight, bias, self.padding, self.stride, self.dilation,
                                                self.groups)
            perm = _largest_first(input.shape)
            axes = [p - 2 for p in perm[2:]]
            cl = torch.channels_last_3d
            out = torch.mkldnn_convolution(input.permute(perm).contiguous(memory_format=cl),
                                           weight.permute(perm).contiguous(memory_format=cl), bias,
                                           [self.padding[a] for a in axes], [self.stride[a] for a in axes],
                                           [self.dilation[a] for a in axes], self.groups)
            return out.permute([perm.index(i) for i in range(5)])
        return super()._conv_forward(input, weight, bias)
