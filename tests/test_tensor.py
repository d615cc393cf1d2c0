"""Tensor basics: dtypes, creation, conversion, errors that name shapes and lines."""
import numpy as np
import pytest

import edgetorch as et


def test_dtypes_and_defaults():
    assert et.tensor([1.0]).dtype is et.float32
    assert et.tensor([1]).dtype is et.int64
    assert et.tensor([True]).dtype is et.bool
    for d in (et.float32, et.float64, et.float16, et.bfloat16, et.int8, et.uint8, et.int32, et.int64, et.bool):
        t = et.zeros(2, 3, dtype=d)
        assert t.dtype is d and t.shape == (2, 3)
    b = et.randn(4).to(et.bfloat16)
    assert b.dtype is et.bfloat16 and (b.float() - b.float()).abs().sum().item() == 0


def test_properties_and_conversion():
    t = et.arange(6).reshape(2, 3)
    assert t.shape == et.Size([2, 3]) and t.ndim == 2 and t.numel() == 6 and t.device == "cpu"
    assert t.tolist() == [[0, 1, 2], [3, 4, 5]] and t[1, 2].item() == 5
    x = et.randn(3, requires_grad=True)
    assert x.is_leaf and (x * 2).grad_fn is not None and not (x * 2).is_leaf
    with pytest.raises(et.AutogradError, match="detach"):
        x.numpy()
    assert isinstance(x.detach().numpy(), np.ndarray)
    c = x.clone()
    assert c.grad_fn is not None
    assert et.from_numpy(np.ones(3, np.float32)).dtype is et.float32


def test_creation_functions():
    et.manual_seed(3)
    a = et.rand(2, 3)
    et.manual_seed(3)
    assert np.array_equal(a.numpy(), et.rand(2, 3).numpy())
    assert et.full((2, 2), 7.0).sum().item() == 28
    assert et.eye(3).sum().item() == 3
    assert et.linspace(0, 1, 5).tolist() == pytest.approx([0, 0.25, 0.5, 0.75, 1])
    assert et.randint(0, 5, (100,)).max().item() < 5
    assert et.zeros_like(a).shape == a.shape and et.ones_like(a).sum().item() == 6


def test_cuda_is_a_clear_error():
    with pytest.raises(et.EdgeTorchError, match="cuda"):
        et.ones(2).to("cuda")
    with pytest.raises(et.EdgeTorchError, match="cuda"):
        et.ones(2, device="cuda")


def test_matmul_shape_error_names_both_shapes_and_line():
    a, b = et.ones(3, 4), et.ones(5, 6)
    with pytest.raises(et.ShapeError) as e:
        a @ b
    msg = str(e.value)
    assert "(5, 6)" in msg and "(3, 4)" in msg and "test_tensor.py" in msg


def test_unknown_shape_errors_list_inputs():
    with pytest.raises(et.ShapeError, match=r"do not broadcast"):
        et.ones(2, 3) + et.ones(4)


def test_index_out_of_range_is_clear():
    with pytest.raises(et.ShapeError, match="out of range"):
        et.nn.functional.embedding(et.tensor([5]), et.ones(3, 2))


def test_shape_methods():
    x = et.arange(24).reshape(2, 3, 4)
    assert x.permute(2, 0, 1).shape == (4, 2, 3)
    assert x.transpose(0, 2).shape == (4, 3, 2) and x.mT.shape == (2, 4, 3)
    assert x.unsqueeze(1).shape == (2, 1, 3, 4) and x.unsqueeze(1).squeeze(1).shape == (2, 3, 4)
    assert x.flatten(1).shape == (2, 12) and x.view(-1, 4).shape == (6, 4)
    assert [t.shape[1] for t in x.split(2, 1)] == [2, 1] and len(x.chunk(2, 2)) == 2
    assert et.stack([x, x], 1).shape == (2, 2, 3, 4) and et.cat([x, x], -1).shape == (2, 3, 8)
    assert x[:, None, 1].shape == (2, 1, 4) and x[..., 0].shape == (2, 3)
    v, i = x.float().max(dim=1)
    assert v.shape == (2, 4) and i.dtype is et.int64
    assert x.float().std().item() == pytest.approx(np.arange(24).std(ddof=1), rel=1e-5)
    assert x.repeat_interleave(2, 0).shape == (4, 3, 4)


def test_repr_mentions_grad_fn():
    x = et.ones(2, requires_grad=True)
    assert "requires_grad=True" in repr(x)
    assert "grad_fn=<MulBackward>" in repr(x * 2)
