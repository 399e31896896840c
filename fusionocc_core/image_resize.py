"""The image resize of FusionOcc's input pipeline, shared by the training/evaluation data and the Predictor.

The original resizes camera images with PIL's `Image.resize(size, BICUBIC)`, which prefilters when shrinking
(antialiasing). torch's antialiased bicubic is the same filter (to within rounding) and runs batched on the
model's device, so both the data pipeline and the streaming Predictor use it: node and offline evaluation
then feed the network identical pixels. No OpenCV here, so the node does not need it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def scaled_size(width: int, height: int, scale: float) -> tuple[int, int]:
    """(width, height) of an image resized by `scale`, truncated as the original's PIL resize dims."""
    return int(width * scale), int(height * scale)


def resize_antialiased(images: torch.Tensor, size_wh: tuple[int, int]) -> torch.Tensor:
    """Resizes (N, C, H, W) images to (W, H) = `size_wh` with antialiased bicubic: PIL's
    `Image.resize(size, BICUBIC)` to within rounding (the original's resize). uint8 in -> rounded uint8 out;
    float stays float. Shared by the data pipeline and the Predictor, so both feed the network the same pixels.
    """
    out = F.interpolate(images.float(), size=(size_wh[1], size_wh[0]), mode="bicubic", antialias=True,
                        align_corners=False)
    if images.dtype == torch.uint8:
        return out.round_().clamp_(0, 255).to(torch.uint8)
    return out.to(images.dtype)
