"""The arena plan: no overlap of values alive together, and real savings."""
import numpy as np
import pytest

import edgetorch as et
from edgetorch.exporter import Dim
from edgetorch.exporter.memory_plan import check_no_overlap, plan_memory
from edgetorch.models import MLP, Decoder, Encoder, ResNet

from .test_capture import export_llama, small_bert, small_llama


def _programs():
    et.manual_seed(0)
    yield "mlp", et.export(MLP().eval(), (et.randn(2, 784),), dynamic_shapes={"x": {0: Dim("batch", max=64)}})
    yield "resnet", et.export(ResNet().eval(), (et.randn(2, 3, 32, 32),))
    b, s = Dim("batch", max=8), Dim("seq", max=40)
    yield "encoder", et.export(Encoder(small_bert()).eval(), (et.randint(1, 97, (2, 5)), et.ones(2, 5, dtype="int64")),
                               dynamic_shapes={"input_ids": {0: b, 1: s}, "attention_mask": {0: b, 1: s}})
    yield "llama", export_llama(Decoder(small_llama()).eval())


@pytest.mark.parametrize("name,ep", list(_programs()), ids=lambda x: x if isinstance(x, str) else "")
def test_plan_has_no_overlap_and_saves_memory(name, ep):
    for g in ep.graphs.values():
        plan = plan_memory(g)
        check_no_overlap(plan)
        if len(g.nodes) > 8:
            assert plan.arena_size <= 0.6 * plan.naive_size, (name, g.name, plan.report())


def test_a_convolutions_input_outlives_its_residual_add():
    """A convolution's input stays alive through the add_relu right after it (the runtime may run
    both as one pass that reads the input while it writes the sum): the sum never shares its slot.
    ResNet-8: the two projection shortcuts (1x1) and the identity block's second 3x3."""
    et.manual_seed(0)
    g = et.export(ResNet().eval(), (et.randn(2, 3, 32, 32),)).graph
    plan = plan_memory(g)
    pairs = [(n, m) for n, m in zip(g.nodes, g.nodes[1:]) if n.op == "conv2d" and m.op == "add_relu"
             and n.output in m.inputs]
    assert sorted(tuple(n.inputs[1].shape[2:]) for n, _ in pairs) == [(1, 1), (1, 1), (3, 3)]
    for n, m in pairs:
        x = plan.alias.get(n.inputs[0], n.inputs[0])
        at = g.nodes.index(m)
        assert plan.lifetimes[x][1] >= at
        a0, a1 = plan.offsets[x], plan.offsets[x] + plan.sizes[x]
        b0, b1 = plan.offsets[m.output], plan.offsets[m.output] + plan.sizes[m.output]
        assert b1 <= a0 or a1 <= b0


def test_overlap_checker_catches_a_bad_plan():
    ep = et.export(MLP((8, 8, 8, 8)).eval(), (et.randn(2, 8),), optimize=False)
    plan = plan_memory(ep.graph)
    vs = list(plan.lifetimes)
    for v in vs:
        plan.offsets[v] = 0
        plan.lifetimes[v] = (0, 10)
    with pytest.raises(AssertionError):
        check_no_overlap(plan)


@pytest.mark.parametrize("shape,index,want", [
    ((1, 1, 2304), (Ellipsis, slice(768, 1536, None)), (768, 768)),      # a decode step's k slice
    ((1, 1, 12), (Ellipsis, slice(-4, None, None)), (8, 4)),
    ((1, 3, 4), (0, slice(1, 3, None)), (4, 8)),                           # whole rows of one image
    ((2, 3, 4), (1,), (12, 12)), ((2, 3, 4), (), (0, 24)), ((5,), (slice(2, 4, 1),), (2, 2)),
    ((2, 3, 4), (slice(None), 1), None),                                   # strided: a copy
    ((1, 2, 8), (Ellipsis, slice(0, 4, None)), None),                      # two runs
    ((1, 1, 10), (Ellipsis, slice(0, 10, 2)), None), ((1, 1, 10), (Ellipsis, slice(5, 5, None)), None),
    ((1, 4), (None, slice(None)), None), ((1, 4), ("#",), None), ((2, 3), (Ellipsis, Ellipsis), None),
    ((3, 4), (7,), None), ((1, 4), (True,), None), ((1, 4), None, None), ((1, 4), 3, None),
    ((1, 4), (1.5,), None), ((1, 4), (slice(0, 2.0),), None)])
def test_slice_view_rule(shape, index, want):
    """edgetorch/_views.py: which getitems are planned as views (offset, count) and which copy."""
    from edgetorch._views import slice_view
    assert slice_view(shape, index) == want
    if want is not None and isinstance(index, tuple):
        x = np.arange(int(np.prod(shape))).reshape(shape)
        sel = x[index]
        assert sel.size == want[1] and sel.reshape(-1)[0] == want[0] and np.array_equal(
            sel.reshape(-1), np.arange(want[0], want[0] + want[1]))
