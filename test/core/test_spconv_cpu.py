"""Which spconv algorithm runs on this machine's CPU-only torch (documented in the README's support matrix)."""
import pytest
import torch

spconv = pytest.importorskip("spconv.pytorch")


def _tiny_sparse_tensor():
    coords = torch.tensor([[0, 1, 1, 1], [0, 2, 3, 1], [0, 3, 3, 3]], dtype=torch.int32)  # (batch, z, y, x)
    features = torch.arange(6, dtype=torch.float32).reshape(3, 2)
    return spconv.SparseConvTensor(features, coords, spatial_shape=[5, 5, 5], batch_size=1)


def test_native_algorithm_runs_on_cpu_and_matches_dense_convolution():
    torch.manual_seed(0)
    conv = spconv.SubMConv3d(2, 4, 3, padding=1, bias=False, algo=spconv.ConvAlgo.Native)
    x = _tiny_sparse_tensor()
    out = conv(x)
    # SubM keeps the input sites; its value there equals a dense 3D convolution at those sites.
    weight = conv.weight.permute(0, 4, 1, 2, 3)  # spconv (Cout, kD, kH, kW, Cin) -> torch (Cout, Cin, kD, kH, kW)
    dense = torch.nn.functional.conv3d(x.dense(), weight, padding=1)
    b, z, y, xx = x.indices.long().T
    torch.testing.assert_close(out.features, dense[b, :, z, y, xx], rtol=1e-5, atol=1e-5)


@pytest.mark.skipif(torch.cuda.is_available(), reason="on CUDA the implicit-gemm algorithm is the one to use")
def test_default_implicit_gemm_algorithm_needs_cuda():
    conv = spconv.SubMConv3d(2, 4, 3, padding=1, bias=False)  # default algo: MaskImplicitGemm
    with pytest.raises(Exception):  # noqa: B017 -- spconv raises a bare Exception/RuntimeError depending on the build
        conv(_tiny_sparse_tensor())
