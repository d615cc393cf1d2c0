"""One generic test over the registry: for every op and every sample, the
shape rule against the real output, a finite-difference gradient check in
float64 (contiguous and strided inputs), and forward/backward against
PyTorch when the oracle extra is installed."""
import numpy as np
import pytest

import edgetorch as et
from edgetorch.ops import REGISTRY
from edgetorch.ops._samples import noncontiguous

from .oracle_map import TORCH

# Ops that exist only as pieces of another op's backward; they are checked
# through that op's gradient test.
HELPERS = {"conv2d_weight", "max_pool2d_backward", "avg_pool2d_backward", "adaptive_avg_pool2d_backward",
           "batch_norm_train_backward"}


def _cases():
    out = []
    for name, d in sorted(REGISTRY.items()):
        if d.samples is None:
            continue
        for i, s in enumerate(d.samples(np.random.default_rng(hash(name) % 2**32))):
            out.append(pytest.param(name, i, id=f"{name}-{i}{'-' + s.note if s.note else ''}"))
    return out


CASES = _cases()


def _sample(name, i):
    return REGISTRY[name].samples(np.random.default_rng(hash(name) % 2**32))[i]


def _run(d, s, arrays):
    ts = [None if a is None else et.Tensor(a) for a in arrays]
    return d(*ts, **s.attrs), ts


def test_every_op_has_samples_or_is_a_helper():
    missing = [n for n, d in REGISTRY.items() if d.samples is None and n not in HELPERS]
    assert not missing, f"ops without sample inputs: {missing}"


def test_registry_covers_the_issue_list():
    wanted = """add sub mul div pow maximum minimum eq ne lt le gt ge where clamp abs neg exp log sqrt rsqrt
    sin cos tanh sigmoid relu leaky_relu gelu silu softplus sum mean amax amin argmax argmin var
    logsumexp prod matmul linear einsum reshape permute expand repeat cat gather scatter_add
    index_select triu tril pad roll softmax log_softmax layer_norm rms_norm embedding conv2d
    conv_transpose2d max_pool2d avg_pool2d adaptive_avg_pool2d batch_norm
    scaled_dot_product_attention rotary_embedding getitem index_put""".split()
    assert not [w for w in wanted if w not in REGISTRY]


@pytest.mark.parametrize("name,i", CASES)
def test_shape_rule_matches_forward(name, i):
    d = REGISTRY[name]
    s = _sample(name, i)
    out, ts = _run(d, s, s.args)
    metas = [None if t is None else et.ops.TensorMeta(tuple(t.shape), t._data.dtype) for t in ts]
    m = d.meta(*metas, **s.attrs)
    if "data-dependent" in s.note:
        assert all(a >= b for a, b in zip(m.shape, out.shape)), "rule must bound the real shape"
        return
    assert tuple(m.shape) == tuple(out.shape), f"{name}: rule {m.shape} vs real {out.shape}"
    assert np.dtype(m.dtype) == out._data.dtype, f"{name}: rule {m.dtype} vs real {out._data.dtype}"


def _diff_inputs(d, s):
    return [k for k, a in enumerate(s.args)
            if a is not None and k not in s.nondiff and np.asarray(a).dtype.kind == "f"]


def _gradcheck(d, s, arrays, eps=1e-6):
    arrays = [None if a is None else (np.asarray(a, dtype=np.float64) if np.asarray(a).dtype.kind == "f" else a)
              for a in arrays]
    idx = _diff_inputs(d, s)
    ts = [None if a is None else et.Tensor(a, requires_grad=(k in idx)) for k, a in enumerate(arrays)]
    out = d(*ts, **s.attrs)
    w = np.random.default_rng(1).normal(size=out.shape)
    loss = (out * et.Tensor(w)).sum()
    grads = et.autograd.grad(loss, [ts[k] for k in idx], allow_unused=True)
    for k, g in zip(idx, grads):
        a = np.array(arrays[k], dtype=np.float64)
        num = np.zeros_like(a)
        flat = a.reshape(-1)
        for j in range(flat.size):
            old = flat[j]
            vals = []
            for delta in (eps, -eps):
                flat[j] = old + delta
                args = list(arrays)
                args[k] = a.copy()
                o = d(*[None if x is None else et.Tensor(x) for x in args], **s.attrs)._data
                vals.append(float((o * w).sum()))
            flat[j] = old
            num.reshape(-1)[j] = (vals[0] - vals[1]) / (2 * eps)
        got = np.zeros_like(a) if g is None else g._data
        np.testing.assert_allclose(got, num, rtol=1e-4, atol=1e-6,
                                   err_msg=f"{d.name}: gradient of input {k} ({d.inputs[min(k, len(d.inputs)-1)]})")


@pytest.mark.parametrize("name,i", [c for c in CASES if REGISTRY[c.values[0]].differentiable])
def test_gradient_matches_finite_differences(name, i):
    d = REGISTRY[name]
    s = _sample(name, i)
    if not _diff_inputs(d, s) or not s.gradcheck:
        pytest.skip("no differentiable input in this sample (or gradient differs from FD by design)")
    _gradcheck(d, s, s.args)


@pytest.mark.parametrize("name,i", [c for c in CASES if REGISTRY[c.values[0]].differentiable])
def test_gradient_with_strided_inputs(name, i):
    d = REGISTRY[name]
    s = _sample(name, i)
    if not _diff_inputs(d, s) or not s.gradcheck:
        pytest.skip("no differentiable input in this sample (or gradient differs from FD by design)")
    args = [noncontiguous(a) if isinstance(a, np.ndarray) and a.dtype.kind == "f" else a for a in s.args]
    ref, _ = _run(d, s, s.args)
    out, _ = _run(d, s, args)
    np.testing.assert_allclose(out._data, ref._data, rtol=1e-12, atol=1e-12)
    _gradcheck(d, s, args)


@pytest.mark.oracle
@pytest.mark.parametrize("name,i", [c for c in CASES if c.values[0] in TORCH])
def test_matches_pytorch(name, i):
    torch = pytest.importorskip("torch")
    d = REGISTRY[name]
    s = _sample(name, i)
    f32 = [None if a is None else (np.asarray(a, np.float32) if np.asarray(a).dtype.kind == "f" else np.asarray(a))
           for a in s.args]
    idx = _diff_inputs(d, s) if d.differentiable else []
    ts = [None if a is None else et.Tensor(a, requires_grad=k in idx) for k, a in enumerate(f32)]
    out = d(*ts, **s.attrs)
    tt = [None if a is None else torch.tensor(a, requires_grad=k in idx) for k, a in enumerate(f32)]
    ref = TORCH[name](*tt, **s.attrs)
    rtol = 1e-5 if name not in ("conv2d", "conv_transpose2d", "matmul", "linear", "einsum",
                                "scaled_dot_product_attention") else 1e-4
    np.testing.assert_allclose(out._data.astype(np.float64), ref.detach().numpy().astype(np.float64),
                               rtol=rtol, atol=1e-5, err_msg=f"{name} forward")
    if idx and out._data.dtype.kind == "f":
        w = np.random.default_rng(2).normal(size=out.shape).astype(np.float32)
        gs = et.autograd.grad((out * et.Tensor(w)).sum(), [ts[k] for k in idx], allow_unused=True)
        tg = torch.autograd.grad((ref * torch.tensor(w)).sum(), [tt[k] for k in idx], allow_unused=True)
        for k, a, b in zip(idx, gs, tg):
            a = np.zeros(ts[k].shape) if a is None else a._data
            b = np.zeros(ts[k].shape) if b is None else b.numpy()
            np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4, err_msg=f"{name} grad of input {k}")
