"""The backward pass: walk recorded Nodes in reverse topological order.

Dependencies are counted first (Kahn's algorithm) so each node runs once,
after every consumer of its output has sent its gradient.
"""
from __future__ import annotations

import numpy as np

from .._errors import AutogradError
from . import grad_mode
from .function import Node


def _dependencies(roots):
    deps = {}
    seen = set()
    stack = [r for r in roots if isinstance(r, Node)]
    for r in stack:
        seen.add(id(r))
    while stack:
        n = stack.pop()
        for e in n.next:
            if isinstance(e, Node):
                deps[e] = deps.get(e, 0) + 1
                if id(e) not in seen:
                    seen.add(id(e))
                    stack.append(e)
    return deps


def _acc(a, b):
    if a is None:
        return b
    return a + b


def run_backward(tensors, grad_tensors, retain_graph=False, create_graph=False,
                 capture=None, accumulate=True):
    """Propagate `grad_tensors` from `tensors` back to the leaves.

    capture: optional list of tensors whose gradient is returned instead of
    (or as well as) accumulated; used by `autograd.grad`.
    """
    from .._tensor import Tensor
    grads = {}        # Node -> accumulated grad of its output
    leaf_grads = {}   # id(leaf) -> (leaf, grad)
    roots = []
    for t, g in zip(tensors, grad_tensors):
        if t.grad_fn is None:
            if t.requires_grad:
                leaf_grads[id(t)] = (t, _acc(leaf_grads.get(id(t), (None, None))[1], g))
            continue
        roots.append(t.grad_fn)
        grads[t.grad_fn] = _acc(grads.get(t.grad_fn), g)
    cap_nodes = {}
    cap_leaves = {}
    if capture is not None:
        for i, t in enumerate(capture):
            if t.grad_fn is not None:
                cap_nodes.setdefault(t.grad_fn, []).append(i)
            else:
                cap_leaves.setdefault(id(t), []).append(i)
    captured = [None] * (len(capture) if capture is not None else 0)

    deps = _dependencies(roots)
    ready = [r for r in dict.fromkeys(roots) if deps.get(r, 0) == 0]
    prev = grad_mode.is_grad_enabled()
    grad_mode.set_grad_enabled(create_graph)
    try:
        while ready:
            node = ready.pop()
            g = grads.pop(node, None)
            if node in cap_nodes:
                for i in cap_nodes[node]:
                    captured[i] = g
            if node.retain is not None:
                t = node.retain()
                if t is not None and g is not None and accumulate:
                    t.grad = _acc(t.grad, g if create_graph else g.detach())
            if g is not None:
                in_grads = node.op.backward(node, g)
                if len(in_grads) != len(node.next):
                    raise AssertionError(f"{node.name()} returned {len(in_grads)} grads "
                                         f"for {len(node.next)} inputs")
            else:
                in_grads = (None,) * len(node.next)
            if not retain_graph:
                node.release()
            for edge, ig in zip(node.next, in_grads):
                if edge is None:
                    continue
                if ig is not None and not isinstance(ig, Tensor):
                    ig = Tensor(ig)
                if isinstance(edge, Node):
                    if ig is not None:
                        if tuple(ig.shape) != tuple(edge.out_shape):
                            raise AssertionError(f"{node.name()}: grad shape {tuple(ig.shape)} "
                                                 f"!= input shape {tuple(edge.out_shape)}")
                        grads[edge] = _acc(grads.get(edge), ig)
                    deps[edge] -= 1
                    if deps[edge] == 0:
                        ready.append(edge)
                elif ig is not None:
                    prev_g = leaf_grads.get(id(edge), (None, None))[1]
                    leaf_grads[id(edge)] = (edge, _acc(prev_g, ig))
    finally:
        grad_mode.set_grad_enabled(prev)

    for key, (leaf, g) in leaf_grads.items():
        if key in cap_leaves:
            for i in cap_leaves[key]:
                captured[i] = g
        if accumulate:
            if g.dtype != leaf.dtype:
                g = g.to(leaf.dtype)
            for h in leaf._hooks or ():
                r = h(g)
                if r is not None:
                    g = r
            if leaf.grad is None:
                leaf.grad = g if create_graph else g.detach()
            else:
                leaf.grad = leaf.grad + g if create_graph else (leaf.grad + g).detach()
    return captured


def _make_grads(tensors, grad_tensors, create_graph):
    from .._tensor import Tensor
    out = []
    for t, g in zip(tensors, grad_tensors):
        if g is None:
            if t.numel() != 1:
                raise AutogradError(
                    f"grad can be implicitly created only for scalar outputs, but the output "
                    f"has shape {tuple(t.shape)}. Pass a gradient of that shape, e.g. "
                    f"y.backward(et.ones_like(y)), or reduce it first (y.sum().backward()).")
            g = Tensor(np.ones(t.shape, dtype=t._data.dtype))
        elif not isinstance(g, Tensor):
            g = Tensor(np.asarray(g, dtype=t._data.dtype))
        if tuple(g.shape) != tuple(t.shape):
            raise AutogradError(f"gradient has shape {tuple(g.shape)} but the output has "
                                f"shape {tuple(t.shape)}")
        out.append(g)
    return out


def backward(tensors, grad_tensors=None, retain_graph=None, create_graph=False):
    """Accumulate d(tensors)/d(leaf) into every leaf's `.grad`."""
    from .._tensor import Tensor
    if isinstance(tensors, Tensor):
        tensors = [tensors]
    if grad_tensors is None or isinstance(grad_tensors, Tensor):
        grad_tensors = [grad_tensors] * len(tensors) if grad_tensors is None else [grad_tensors]
    for t in tensors:
        if not t.requires_grad:
            raise AutogradError(
                "element 0 of tensors does not require grad and does not have a grad_fn: "
                "nothing to differentiate. Did you create it under no_grad(), or forget "
                "requires_grad=True on the parameters?")
    if retain_graph is None:
        retain_graph = create_graph
    run_backward(tensors, _make_grads(tensors, grad_tensors, create_graph),
                 retain_graph=retain_graph, create_graph=create_graph)


def grad(outputs, inputs, grad_outputs=None, retain_graph=None, create_graph=False,
         allow_unused=False):
    """Return d(outputs)/d(inputs) without touching `.grad` (torch.autograd.grad).

    >>> x = et.tensor([2.0], requires_grad=True)
    >>> (g,) = et.autograd.grad((x ** 3).sum(), x, create_graph=True)   # 3x^2 = 12
    """
    from .._tensor import Tensor
    single_out = isinstance(outputs, Tensor)
    outputs = [outputs] if single_out else list(outputs)
    inputs = [inputs] if isinstance(inputs, Tensor) else list(inputs)
    if grad_outputs is None or isinstance(grad_outputs, Tensor):
        grad_outputs = [grad_outputs] * len(outputs) if grad_outputs is None else [grad_outputs]
    for i, t in enumerate(inputs):
        if not t.requires_grad:
            raise AutogradError(f"input {i} of autograd.grad does not require grad")
    if retain_graph is None:
        retain_graph = create_graph
    res = run_backward(outputs, _make_grads(outputs, grad_outputs, create_graph),
                       retain_graph=retain_graph, create_graph=create_graph,
                       capture=inputs, accumulate=False)
    for i, g in enumerate(res):
        if g is None and not allow_unused:
            raise AutogradError(f"input {i} of autograd.grad was not used in the graph; "
                                "pass allow_unused=True if this is expected")
    return tuple(g if g is None or create_graph else g.detach() for g in res)
