"""Suite `scatter`: the scatter-mean of dynamic voxelization with torch's own reductions (and torch-scatter if
present)."""
from __future__ import annotations

from collections.abc import Callable

from fusionocc_ros.bench.common import Row, SuiteResult, time_call


def suite_scatter(quick: bool) -> SuiteResult:
    import torch

    result = SuiteResult("scatter")
    points, voxels, channels = (60_000, 12_000, 5) if quick else (300_000, 60_000, 5)
    generator = torch.Generator().manual_seed(0)
    features = torch.randn(points, channels, generator=generator)
    ids = torch.randint(0, voxels, (points,), generator=generator)

    def index_add_mean() -> torch.Tensor:
        sums = torch.zeros(voxels, channels).index_add_(0, ids, features)
        counts = torch.zeros(voxels).index_add_(0, ids, torch.ones(points))
        return sums / counts.clamp(min=1)[:, None]

    def scatter_reduce_mean() -> torch.Tensor:
        index = ids[:, None].expand(-1, channels)
        return torch.zeros(voxels, channels).scatter_reduce_(0, index, features, "mean", include_self=False)

    cases: dict[str, Callable[[], torch.Tensor]] = {
        "torch index_add_ sum/count": index_add_mean,
        "torch scatter_reduce_ mean": scatter_reduce_mean,
    }
    try:
        import torch_scatter

        cases["torch_scatter.scatter_mean"] = lambda: torch_scatter.scatter_mean(features, ids, 0, dim_size=voxels)
    except ImportError:
        result.notes.append("torch-scatter not installed: its row is missing (docs/install.md has a same-run figure)")
    reference = index_add_mean()
    baseline = None
    for name, fn in cases.items():
        torch.testing.assert_close(fn(), reference, rtol=1e-5, atol=1e-5)
        median, p95, _ = time_call(fn, repeats=5 if quick else 30)
        baseline = baseline if baseline is not None else median
        result.rows.append(Row(f"{name} ({points // 1000}k pts -> {voxels // 1000}k voxels)", median, p95,
                               baseline_ms=baseline))
    return result
