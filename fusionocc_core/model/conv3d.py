"""`Conv3d`: nn.Conv3d that sends CPU convolutions with few input channels straight to oneDNN.

PyTorch's CPU dispatcher falls back to its slow reference kernel (`slow_conv3d`) for float32 3D convolutions
with fewer than 8 input channels, while oneDNN handles them fine: a 4 -> 4 channel 3x3x3 convolution over the
200 x 200 x 16 occupancy grid took 215 ms through nn.Conv3d and 58 ms through `torch.mkldnn_convolution` on
the development machine, with identical outputs and gradients. Wider layers already go to oneDNN. Same
parameters and state-dict keys as nn.Conv3d; every other case (CUDA, half precision, other padding modes) is
nn.Conv3d's own path.
"""
from __future__ import annotations

import torch
from torch import nn

_SLOW_PATH_MAX_IN_CHANNELS = 7


class Conv3d(nn.Conv3d):
    def _conv_forward(self, input: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        if (
            self.in_channels <= _SLOW_PATH_MAX_IN_CHANNELS
            and input.device.type == "cpu"
            and input.dtype == torch.float32
            and self.padding_mode == "zeros"
            and not isinstance(self.padding, str)
            and torch.backends.mkldnn.is_available()
        ):
            return torch.mkldnn_convolution(input, weight, bias, self.padding, self.stride, self.dilation,
                                            self.groups)
        return super()._conv_forward(input, weight, bias)
