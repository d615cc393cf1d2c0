"""The arena plan: no overlap of values alive together, and real savings."""
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


def test_overlap_checker_catches_a_bad_plan():
    ep = et.export(MLP((8, 8, 8, 8)).eval(), (et.randn(2, 8),), optimize=False)
    plan = plan_memory(ep.graph)
    vs = list(plan.lifetimes)
    for v in vs:
        plan.offsets[v] = 0
        plan.lifetimes[v] = (0, 10)
    with pytest.raises(AssertionError):
        check_no_overlap(plan)
