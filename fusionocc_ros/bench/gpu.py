"""Suite `gpu`: end-to-end model latency per preset and precision on CUDA (skipped without CUDA)."""
from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING

from fusionocc_ros.bench.common import Row, SuiteResult, SuiteSkipped, time_call

if TYPE_CHECKING:
    import torch

    from fusionocc_core.model.fusionocc import FusionOcc


def _forward(model: FusionOcc, inputs: list[torch.Tensor], dtype: torch.dtype | None) -> None:
    """One synchronised prediction, under autocast to `dtype` (None: fp32)."""
    import torch

    with torch.inference_mode(), torch.autocast("cuda", dtype=dtype, enabled=dtype is not None):
        model.predict(*inputs)
    torch.cuda.synchronize()


def suite_gpu(quick: bool) -> SuiteResult:
    import torch

    if not torch.cuda.is_available():
        raise SuiteSkipped("no CUDA device: GPU latencies are not measured on this machine")
    from fusionocc_core.model.flops import example_inputs
    from fusionocc_core.model.presets import build_model, get_config

    result = SuiteResult("gpu")
    device = torch.device("cuda")
    presets = ("tiny", "fast") if quick else ("tiny", "fast", "official")
    precisions = {"fp32": None, "fp16": torch.float16, "bf16": torch.bfloat16}
    for preset in presets:
        model = build_model(preset).to(device).eval()
        inputs = [t.to(device) for t in example_inputs(get_config(preset)).as_tuple()]
        baseline = None
        for name, dtype in precisions.items():
            if dtype is torch.bfloat16 and not torch.cuda.is_bf16_supported():
                continue
            torch.cuda.reset_peak_memory_stats()
            median, p95, _ = time_call(partial(_forward, model, inputs, dtype), repeats=5 if quick else 20, warmup=3)
            baseline = baseline if baseline is not None else median
            result.rows.append(Row(f"{preset} {name}", median, p95, baseline_ms=baseline,
                                   extra={"peak_memory_gb": torch.cuda.max_memory_allocated() / 2**30}))
        del model
        torch.cuda.empty_cache()
    result.notes.append(f"{torch.cuda.get_device_name(0)}; ratio = speed-up over fp32 of the same preset; "
                        "temporal mode on, batch 1, synthetic inputs (fusionocc_core.model.flops.example_inputs)")
    return result
