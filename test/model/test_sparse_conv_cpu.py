"""The torch rulebook sparse convolution against spconv's CPU Native algorithm: output sites, values and
gradients for submanifold and strided convs (stride / padding / kernel shapes), the grid borders where linear
keys could alias, and the input checks."""

import pytest
import torch

spconv = pytest.importorskip("spconv.pytorch")

from fusionocc_core.model.sparse_conv_cpu import (
    IM2COL_MIN_FILL,
    SparseSites,
    sparse_conv,
    strided_rulebook,
    submanifold_rulebook,
    to_dense,
)

SUBM_CASES = {
    "k3": dict(kernel_size=3, padding=1),
    "k5": dict(kernel_size=5, padding=2),
    "k313_pad0": dict(kernel_size=(3, 1, 3), padding=0),  # spconv centres SubM whatever the padding
}
STRIDED_CASES = {
    "k3s2p1": dict(kernel_size=3, stride=2, padding=1),  # the encoder's downsampling
    "k3s2p0": dict(kernel_size=3, stride=2, padding=0),
    "k2s2p0": dict(kernel_size=2, stride=2, padding=0),
    "k3s1p1": dict(kernel_size=3, stride=1, padding=1),  # regular conv at stride 1: the active set dilates
    "anisotropic": dict(kernel_size=(3, 2, 3), stride=(1, 2, 3), padding=(1, 0, 1)),
}


def _random_coords(shape, count, batch_size, generator):
    cells = torch.stack([torch.randint(0, s, (count,), generator=generator) for s in (batch_size, *shape)], 1)
    return torch.unique(cells, dim=0).int()


def _spconv_reference(conv, features, coords, shape, batch_size):
    """spconv's output (dense index, features, spatial shape), sorted by dense index (spconv's own order
    is an implementation detail)."""
    out = conv(spconv.SparseConvTensor(features, coords, list(shape), batch_size))
    z_size, y_size, x_size = out.spatial_shape
    c = out.indices.long()
    index = ((c[:, 0] * z_size + c[:, 1]) * y_size + c[:, 2]) * x_size + c[:, 3]
    order = torch.argsort(index)
    return index[order], out.features[order], tuple(out.spatial_shape)


def _ours(conv, features, coords, shape, batch_size, method):
    sites, order = SparseSites.from_coords(coords, shape, batch_size)
    features = features if order is None else features[order]
    if conv.subm:
        out_sites, rulebook = sites, submanifold_rulebook(sites, tuple(conv.kernel_size))
    else:
        out_sites, rulebook = strided_rulebook(sites, tuple(conv.kernel_size), tuple(conv.stride),
                                               tuple(conv.padding))
    out = sparse_conv(features, rulebook, conv.weight, conv.bias, method=method)
    return out_sites, out


def _conv(case, generator):
    kwargs = {**SUBM_CASES, **STRIDED_CASES}[case]
    cls = spconv.SubMConv3d if case in SUBM_CASES else spconv.SparseConv3d
    torch.manual_seed(int(torch.randint(0, 2**31, (1,), generator=generator)))
    conv = cls(3, 4, bias=True, algo=spconv.ConvAlgo.Native, **kwargs)
    torch.nn.init.normal_(conv.bias)
    return conv


@pytest.mark.parametrize("method", ["pairs", "im2col"])
@pytest.mark.parametrize("case", [*SUBM_CASES, *STRIDED_CASES])
@pytest.mark.parametrize("count", [1, 40, 600])
def test_matches_spconv_native_on_random_sites(case, count, method):
    gen = torch.Generator().manual_seed(count)
    shape, batch_size = (9, 10, 12), 2
    coords = _random_coords(shape, count, batch_size, gen)
    features = torch.randn(len(coords), 3, generator=gen)
    conv = _conv(case, gen)
    with torch.no_grad():
        index, reference, out_shape = _spconv_reference(conv, features, coords, shape, batch_size)
        sites, out = _ours(conv, features, coords, shape, batch_size, method)
    assert sites.spatial_shape == out_shape
    assert torch.equal(sites.dense_index(), index)  # the same output sites, in increasing order
    torch.testing.assert_close(out, reference, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("case", ["k3", "k3s2p1", "anisotropic"])
def test_gradients_match_spconv(case):
    gen = torch.Generator().manual_seed(3)
    shape, batch_size = (8, 8, 10), 2
    coords = _random_coords(shape, 300, batch_size, gen)
    features = torch.randn(len(coords), 3, generator=gen)
    conv = _conv(case, gen)
    grads = {}
    for name in ("spconv", "ours"):
        conv.zero_grad()
        leaf = features.clone().requires_grad_(True)
        if name == "spconv":
            _, out, _ = _spconv_reference(conv, leaf, coords, shape, batch_size)
        else:
            _, out = _ours(conv, leaf, coords, shape, batch_size, "pairs")  # sorted input: same row order
        (out * torch.linspace(-1, 1, out.numel()).view_as(out)).sum().backward()
        grads[name] = (leaf.grad, conv.weight.grad.clone(), conv.bias.grad.clone())
    for ours, reference in zip(grads["ours"], grads["spconv"], strict=True):
        torch.testing.assert_close(ours, reference, rtol=1e-4, atol=1e-5)


def test_no_neighbours_across_row_or_batch_borders():
    """Sites that are neighbours in an unpadded linear key but not in space (x = X-1 next to the next row's
    x = 0; the last cell of sample 0 next to the first of sample 1) must not be paired."""
    shape = (2, 3, 4)
    coords = torch.tensor(
        [[0, 0, 0, 3], [0, 0, 1, 0], [0, 1, 2, 3], [1, 0, 0, 0], [0, 0, 2, 3], [0, 1, 0, 0]],
        dtype=torch.int32,
    )
    features = torch.arange(1.0, 7.0).view(6, 1)
    conv = spconv.SubMConv3d(1, 1, 3, padding=1, bias=False, algo=spconv.ConvAlgo.Native)
    torch.nn.init.ones_(conv.weight)
    with torch.no_grad():
        _, reference, _ = _spconv_reference(conv, features, coords, shape, 2)
        sites, out = _ours(conv, features, coords, shape, 2, "pairs")
    torch.testing.assert_close(out, reference)
    # Only true 3x3x3 neighbours are summed: (0,0,1,0) sees (0,1,0,0), not the x = 3 cells next to it in key
    by_site = dict(zip(sites.dense_index().tolist(), out[:, 0].tolist(), strict=True))
    assert by_site[(0 * 3 + 1) * 4 + 0] == 2.0 + 6.0
    assert by_site[((1 * 2 + 0) * 3 + 0) * 4 + 0] == 4.0  # sample 1 alone


def test_unsorted_input_is_sorted_with_its_features():
    gen = torch.Generator().manual_seed(5)
    shape = (6, 7, 8)
    coords = _random_coords(shape, 200, 2, gen)
    features = torch.randn(len(coords), 3, generator=gen)
    shuffle = torch.randperm(len(coords), generator=gen)
    conv = _conv("k3", gen)
    with torch.no_grad():
        index, reference, _ = _spconv_reference(conv, features, coords, shape, 2)
        sites, out = _ours(conv, features[shuffle], coords[shuffle], shape, 2, "pairs")
    assert torch.equal(sites.dense_index(), index)
    torch.testing.assert_close(out, reference, rtol=1e-5, atol=1e-5)


def test_input_checks():
    shape = (4, 4, 4)
    with pytest.raises(ValueError, match="repeated site"):
        SparseSites.from_coords(torch.tensor([[0, 1, 1, 1], [0, 0, 0, 0], [0, 1, 1, 1]]), shape, 1)
    with pytest.raises(ValueError, match="outside"):
        SparseSites.from_coords(torch.tensor([[0, 1, 1, 4]]), shape, 1)
    with pytest.raises(ValueError, match="outside"):
        SparseSites.from_coords(torch.tensor([[1, 1, 1, 1]]), shape, 1)  # batch index >= batch size
    with pytest.raises(ValueError, match=r"\(N, 4\)"):
        SparseSites.from_coords(torch.zeros(3, 3, dtype=torch.int32), shape, 1)
    with pytest.raises(NotImplementedError, match="odd kernel"):
        submanifold_rulebook(SparseSites.from_coords(torch.zeros(1, 4, dtype=torch.int32), shape, 1)[0], 2)


def test_empty_input_gives_empty_output():
    sites, _ = SparseSites.from_coords(torch.zeros(0, 4, dtype=torch.int32), (8, 8, 8), 1)
    weight = torch.randn(4, 3, 3, 3, 2)
    assert sparse_conv(torch.zeros(0, 2), submanifold_rulebook(sites), weight).shape == (0, 4)
    out_sites, rulebook = strided_rulebook(sites, 3, 2, 1)
    assert out_sites.num == 0 and out_sites.spatial_shape == (4, 4, 4)
    assert sparse_conv(torch.zeros(0, 2), rulebook, weight).shape == (0, 4)


def test_dense_volume_matches_spconv():
    gen = torch.Generator().manual_seed(7)
    shape = (5, 6, 7)
    coords = _random_coords(shape, 80, 3, gen)
    features = torch.randn(len(coords), 4, generator=gen)
    sites, order = SparseSites.from_coords(coords, shape, 3)
    ours = to_dense(features if order is None else features[order], sites)
    assert torch.equal(ours, spconv.SparseConvTensor(features, coords, list(shape), 3).dense())
    assert torch.equal(sites.coords, coords.long()[order] if order is not None else coords.long())


def test_auto_method_follows_the_fill():
    """im2col for dense neighbourhoods, pairs for sparse ones (both exact: the choice is speed only)."""
    gen = torch.Generator().manual_seed(11)
    shape = (6, 6, 6)
    for count, expect_dense in ((400, True), (15, False)):
        coords = _random_coords(shape, count, 1, gen)
        rulebook = submanifold_rulebook(SparseSites.from_coords(coords, shape, 1)[0])
        assert (rulebook.fill >= IM2COL_MIN_FILL) == expect_dense
        features = torch.randn(len(coords), 3, generator=gen)
        weight = torch.randn(2, 3, 3, 3, 3, generator=gen)
        with torch.no_grad():
            torch.testing.assert_close(sparse_conv(features, rulebook, weight),
                                       sparse_conv(features, rulebook, weight, method="pairs"))
    with pytest.raises(ValueError, match="inference-only"):
        sparse_conv(features.requires_grad_(True), rulebook, weight, method="im2col")


def test_flop_counting_sees_the_same_products_as_spconv():
    """fusionocc_core.model.flops counts the sparse lidar FLOPs through torch's FLOP counter: on the torch
    backend they must be the useful products (spconv's), not im2col's absent taps."""
    from torch.utils.flop_counter import FlopCounterMode

    gen = torch.Generator().manual_seed(13)
    shape = (6, 6, 6)
    coords = _random_coords(shape, 400, 1, gen)  # dense enough for im2col outside the counter
    features = torch.randn(len(coords), 3, generator=gen)
    counts = {}
    for name in ("spconv", "ours"):
        conv = _conv("k3", torch.Generator().manual_seed(1))
        counter = FlopCounterMode(display=False)
        with torch.no_grad(), counter:
            if name == "spconv":
                _spconv_reference(conv, features, coords, shape, 1)
            else:
                _ours(conv, features, coords, shape, 1, "auto")
        counts[name] = counter.get_total_flops()
    assert counts["ours"] == counts["spconv"] > 0
