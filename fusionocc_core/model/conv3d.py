"""`Conv3d`: nn.Conv3d that sends CPU float32 convolutions straight to oneDNN.

PyTorch's CPU dispatcher picks its slow reference kernel (`slow_conv3d`) for float32 3D convolutions with few
input channels or small inputs, while oneDNN handles them fine, with identical outputs and gradients. Measured
on the development machine (2 threads): a 4 -> 4 channel 3x3x3 convolution over the 200 x 200 x 16 occupancy
grid 215 ms through nn.Conv3d vs 58 ms through `torch.mkldnn_convolution`; 16 -> 16 channels at 100 x 100 x 8
61.6 vs 4.8 ms; 32 -> 32 at 50 x 50 x 4 14.5 vs 1.0 ms. Layers that PyTorch already sends to oneDNN (e.g. 64
channels at full resolution) take the same time either way. Same parameters and state-dict keys as
nn.Conv3d; every other case (CUDA, half precision, other padding modes) is nn.Conv3d's own path.
"""
from __future__ import annotations

import torch
from torch import nn


class Conv3d(nn.Conv3d):
    def _conv_forward(self, input: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        if (
            input.device.type == "cpu"
            and input.dtype == torch.float32
            and weight.dtype == torch.float32
            and self.padding_mode == "zeros"
            and not isinstance(self.padding, str)
            and torch.backends.mkldnn.is_available()
        ):
            return torch.mkldnn_convolution(input, weight, bias, self.padding, self.stride, self.dilation,
                                            self.groups)
        return super()._conv_forward(input, weight, bias)
