"""Autograd engine behaviour: accumulation, graphs, modes, in-place safety, errors."""
import numpy as np
import pytest

import edgetorch as et


def test_backward_scalar_and_gradient_argument():
    x = et.tensor([1.0, 2.0, 3.0], requires_grad=True)
    (x * x).sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), [2, 4, 6])
    y = x * 3
    y.backward(et.tensor([1.0, 0.0, 2.0]))
    np.testing.assert_allclose(x.grad.numpy(), [5, 4, 12])  # accumulated


def test_non_scalar_backward_says_what_to_do():
    x = et.ones(2, 3, requires_grad=True)
    with pytest.raises(et.AutogradError, match=r"scalar outputs.*shape \(2, 3\).*backward\(et.ones_like"):
        (x * 2).backward()


def test_backward_twice_needs_retain_graph():
    x = et.tensor([1.0], requires_grad=True)
    y = (x.exp() * 2).sum()
    y.backward(retain_graph=True)
    y.backward()
    np.testing.assert_allclose(x.grad.numpy(), [4 * np.e], rtol=1e-6)
    z = (x.exp()).sum()
    z.backward()
    with pytest.raises(et.AutogradError, match="second time"):
        z.backward()


def test_broadcast_gradients_are_reduced():
    a = et.randn(3, 1, requires_grad=True)
    b = et.randn(4, requires_grad=True)
    (a + b).sum().backward()
    np.testing.assert_allclose(a.grad.numpy(), np.full((3, 1), 4.0))
    np.testing.assert_allclose(b.grad.numpy(), np.full((4,), 3.0))


def test_no_grad_and_enable_grad():
    x = et.ones(2, requires_grad=True)
    with et.no_grad():
        y = x * 2
        with et.enable_grad():
            z = x * 2
    assert not y.requires_grad and y.grad_fn is None
    assert z.requires_grad

    @et.no_grad()
    def f(t):
        return t * 3
    assert not f(x).requires_grad


def test_retain_grad_and_autograd_grad_and_higher_order():
    x = et.tensor([2.0], requires_grad=True)
    y = x * x
    y.retain_grad()
    (y * 3).sum().backward()
    np.testing.assert_allclose(y.grad.numpy(), [3.0])
    x2 = et.tensor([2.0, -1.0], requires_grad=True)
    (g,) = et.autograd.grad((x2 ** 3).sum(), x2, create_graph=True)
    np.testing.assert_allclose(g.detach().numpy(), [12.0, 3.0])
    (h,) = et.autograd.grad(g.sum(), x2)
    np.testing.assert_allclose(h.numpy(), [12.0, -6.0])
    assert x2.grad is None  # autograd.grad does not accumulate


def test_second_derivative_of_tanh_uses_saved_output():
    x = et.tensor([0.3, -0.7], dtype="float64", requires_grad=True)
    (g,) = et.autograd.grad(x.tanh().sum(), x, create_graph=True)
    (h,) = et.autograd.grad(g.sum(), x)
    t = np.tanh([0.3, -0.7])
    np.testing.assert_allclose(h.numpy(), -2 * t * (1 - t * t), rtol=1e-10)


def test_inplace_on_saved_tensor_is_detected():
    a = et.randn(3, requires_grad=True)
    b = a * 2
    c = b * b          # saves b
    b.add_(1.0)
    with pytest.raises(et.AutogradError, match="modified by an in-place operation"):
        c.sum().backward()


def test_inplace_on_leaf_requires_no_grad():
    w = et.randn(3, requires_grad=True)
    with pytest.raises(et.AutogradError, match="leaf tensor that requires grad"):
        w.add_(1.0)
    with et.no_grad():
        w.add_(1.0)


def test_inplace_keeps_history_correct():
    a = et.tensor([1.0, 2.0], requires_grad=True)
    b = a * 1
    b.mul_(3)         # b = 3a, nothing saved needs the old b
    b.sum().backward()
    np.testing.assert_allclose(a.grad.numpy(), [3.0, 3.0])


def test_indexing_backward_basic_and_advanced():
    x = et.arange(12, dtype="float32").reshape(3, 4).requires_grad_()
    y = x[1:, ::2].sum() + x[et.tensor([0, 0, 2]), et.tensor([1, 1, 3])].sum() + x[x > 10].sum()
    y.backward()
    want = np.zeros((3, 4))
    want[1:, ::2] += 1
    want[0, 1] += 2
    want[2, 3] += 2  # advanced index + mask (x[2,3] = 11 > 10)
    np.testing.assert_allclose(x.grad.numpy(), want)


def test_setitem_with_grad_flows_to_value():
    base = et.zeros(2, 3)
    v = et.tensor([1.0, 2.0, 3.0], requires_grad=True)
    base = base.clone()
    base[1] = v * 2
    base.sum().backward()
    np.testing.assert_allclose(v.grad.numpy(), [2, 2, 2])


def test_unused_input_to_autograd_grad():
    a, b = et.ones(2, requires_grad=True), et.ones(2, requires_grad=True)
    with pytest.raises(et.AutogradError, match="not used"):
        et.autograd.grad(a.sum(), [a, b])
    ga, gb = et.autograd.grad(a.sum(), [a, b], allow_unused=True)
    assert gb is None


def test_leaf_hook_can_rewrite_grad():
    w = et.ones(3, requires_grad=True)
    w.register_hook(lambda g: g * 10)
    w.sum().backward()
    np.testing.assert_allclose(w.grad.numpy(), [10, 10, 10])
