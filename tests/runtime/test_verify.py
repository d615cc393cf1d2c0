"""Crafted programs, one per class of check: each must raise ProgramError
with a message naming what is wrong."""
import copy

import numpy as np
import pytest

import edgetorch as et
from edgetorch.exporter import Dim
from edgetorch.exporter.serialize import lower
from edgetorch.models import MLP
from edgetorch.runtime import ProgramError, load
from edgetorch.schemas.writer import write


class Gathers(et.nn.Module):
    def __init__(self):
        super().__init__()
        self.table = et.nn.Parameter(et.randn(6, 4))
        self.register_buffer("ids", et.tensor([0, 5, 2]))

    def forward(self, x):
        return et.nn.functional.embedding(self.ids, self.table).sum(0) + x.permute(1, 0).sum(1)


@pytest.fixture(scope="module")
def base():
    et.manual_seed(0)
    return lower(et.export(MLP((8, 16, 4)).eval(), (et.randn(2, 8),),
                           dynamic_shapes={"x": {0: Dim("batch", max=16)}}))


@pytest.fixture(scope="module")
def gathers():
    et.manual_seed(0)
    return lower(et.export(Gathers().eval(), (et.randn(3, 4),), optimize=["dce"]))


def _bad(info, edit, needle, **load_kw):
    i2 = copy.deepcopy(info)
    i2.arrays = [a.copy() for a in info.arrays]
    edit(i2)
    with pytest.raises(ProgramError, match=needle):
        load(write(i2), **load_kw)


def _act(info):
    m = info.methods[0]
    return next(v for v in m.values if v.kind == "activation")


def test_base_program_loads(base, gathers):
    load(write(base))
    load(write(gathers))


def test_unknown_op(base):
    def e(i):
        i.methods[0].instructions[0].op = "frobnicate"
    _bad(base, e, "op 'frobnicate' has no kernel")


def test_negative_dim(base):
    def e(i):
        _act(i).shape = (-3, 16)
    _bad(base, e, "negative")


def test_absurd_rank(base):
    def e(i):
        _act(i).shape = (1,) * 40
    _bad(base, e, "rank 40 exceeds")


def test_memory_budget(base):
    def e(i):
        i.methods[0].arena_size = 1 << 50
    _bad(base, e, "memory budget")
    _bad(base, lambda i: None, "memory budget", memory_budget=100)


def test_huge_dims_overflow_checked_in_python_ints(base):
    def e(i):
        _act(i).shape = (2 ** 40, 2 ** 40)
    _bad(base, e, "needs")


def test_slot_outside_arena(base):
    def e(i):
        _act(i).offset = i.methods[0].arena_size
    _bad(base, e, "planned slot")


def test_overlapping_live_values(base):
    def e(i):
        for v in i.methods[0].values:
            if v.kind == "activation":
                v.offset = 0
                v.nbytes = max(v.nbytes, 16 * 16 * 4)
    _bad(base, e, "alive together")


def test_value_index_out_of_range(base):
    def e(i):
        i.methods[0].instructions[0].inputs[0] = 999
    _bad(base, e, "value index 999 out of range")


def test_use_before_definition(base):
    def e(i):
        m = i.methods[0]
        m.instructions[0].inputs[0] = m.instructions[-1].outputs[0]
    _bad(base, e, "before it is defined")


def test_constant_shape_mismatch(base):
    def e(i):
        i.constants[0].shape = (7, 7)
        i.arrays[0] = np.zeros((7, 7), np.float32)
    _bad(base, e, "declared")


def test_constant_bytes_must_match_shape(base):
    i2 = copy.deepcopy(base)
    i2.arrays = list(base.arrays)
    i2.constants[0].shape = (10 ** 12, 10 ** 12)   # the byte count stays that of the real array
    with pytest.raises(ProgramError, match="needs"):
        load(write(i2))


def test_bad_permutation(gathers):
    def e(i):
        ins = next(x for x in i.methods[0].instructions if x.op == "permute")
        ins.attrs["dims"] = (0, 0)
    _bad(gathers, e, "not a permutation")


def test_bad_axis(gathers):
    def e(i):
        ins = next(x for x in i.methods[0].instructions if x.op == "sum")
        ins.attrs["dim"] = 7
    _bad(gathers, e, "out of range for rank")


def test_constant_indices_out_of_range(gathers):
    def e(i):
        k = next(k for k, c in enumerate(i.constants) if c.name == "ids")
        i.arrays[k] = np.array([0, 6, 2])
    _bad(gathers, e, "outside")


def test_bad_dim_range(base):
    def e(i):
        i.methods[0].dims = [("batch", 5, 2)]
    _bad(base, e, "min <= max")


def test_state_mismatch():
    from ..exporter.test_capture import export_llama, small_llama
    info = lower(export_llama(et.models.Decoder(small_llama()).eval()))

    def e(i):
        i.states[0].shape = (1, 2, 3)
    _bad(info, e, "state")


def test_state_alias_only_for_in_place_updates():
    from ..exporter.test_capture import export_llama, small_llama
    info = lower(export_llama(et.models.Decoder(small_llama()).eval()))
    m = info.methods[1]
    aliased = [v for v in m.values if v.kind == "activation" and v.alias >= 0 and m.values[v.alias].kind == "state"]
    assert len(aliased) == 4                      # every KV-cache write happens in place
    st = aliased[0].alias

    def e(i):
        mm = i.methods[1]
        other = next(v for v in mm.values if v.kind == "activation" and v.alias < 0)
        other.alias = st            # an ordinary activation claiming a state's buffer
    _bad(info, e, "state")


@pytest.fixture(scope="module")
def quantized():
    from edgetorch.exporter import QuantConfig, quantize
    et.manual_seed(0)
    ep = et.export(MLP((64, 32, 6)).eval(), (et.randn(2, 64),))
    return (lower(quantize(ep, "int8-weight")), lower(quantize(ep, QuantConfig("int4-weight", symmetric=False))))


def _qvalue(info, bits):
    return next(v for v in info.methods[0].values if v.quant and v.quant["bits"] == bits)


def test_quantized_programs_load(quantized):
    for info in quantized:
        load(write(info))


@pytest.mark.parametrize("edit,needle", [
    (lambda v: v.quant.update(scale=10 ** 6), "scale index"),
    (lambda v: v.quant.update(axis=1), "one scale per row"),
    (lambda v: v.quant.update(bits=3), "not supported"),
    (lambda v: v.quant.update(scale_dtype="float16"), "quantization says float16"),
])
def test_int8_quant_parameters_checked(quantized, edit, needle):
    _bad(quantized[0], lambda i: edit(_qvalue(i, 8)), needle)


@pytest.mark.parametrize("edit,needle", [
    (lambda v: v.quant.update(group_size=48), "a group size of 32/64/128/256"),
    (lambda v: v.quant.update(group_size=64 * 3), "group size"),

    (lambda v: v.quant.update(zero_point=v.quant["scale"]), "zero points"),
    (lambda v: v.quant.update(zero_point=-1), "zero point index"),
])
def test_int4_quant_parameters_checked(quantized, edit, needle):
    _bad(quantized[1], lambda i: edit(_qvalue(i, 4)), needle)


def test_int4_group_size_must_be_one_the_op_defines():
    """A group of 96 divides K = 192 and the scales are shaped for it, but the op defines 32/64/128/256
    only (the VNNI kernel steps 64 columns at a time)."""
    from edgetorch.exporter import quantize
    from edgetorch.quant.grids import INT4_GROUPS
    from edgetorch.runtime import verify
    assert verify.INT4_GROUPS == INT4_GROUPS
    et.manual_seed(0)
    info = lower(quantize(et.export(MLP((192, 16)).eval(), (et.randn(2, 192),)), "int4-weight"))
    load(write(info))

    def e(i):
        v = _qvalue(i, 4)
        v.quant.update(group_size=96)
        k = v.quant["scale"]
        i.arrays[k] = np.ascontiguousarray(i.arrays[k][:, :2])
        i.constants[k].shape = i.arrays[k].shape
        for ins in i.methods[0].instructions:
            if ins.op == "linear_q4":
                ins.attrs["group_size"] = 96
    _bad(info, e, "a group size of 32/64/128/256")


def test_int4_scale_size_checked(quantized):
    def e(i):
        v = _qvalue(i, 4)
        k = v.quant["scale"]
        i.arrays[k] = i.arrays[k][:-2].copy()        # 30 rows: 15 pairs, the weight has 16
        i.constants[k].shape = i.arrays[k].shape
    _bad(quantized[1], e, "int4 groups need")


@pytest.mark.parametrize("edit", [
    lambda a: a.update(act_block=16), lambda a: a.update(act_block="32"), lambda a: a.update(act_block=True),
    lambda a: a.update(act_block=32, dynamic=True)])
def test_int4_activation_block_attribute_checked(quantized, edit):
    ins = next(x for x in quantized[1].methods[0].instructions if x.op == "linear_q4")
    assert ins.attrs["act_block"] == 32                 # int4-weight's default
    _bad(quantized[1], lambda i: edit(next(x for x in i.methods[0].instructions if x.op == "linear_q4").attrs),
         "act_block")


@pytest.fixture(scope="module")
def static():
    from edgetorch.exporter import quantize
    et.manual_seed(0)
    ep = et.export(MLP((8, 16, 4)).eval(), (et.randn(2, 8),))
    return lower(quantize(ep, "int8-static", calibration=[(et.randn(2, 8),)]))


@pytest.mark.parametrize("op,attr,value,needle", [
    ("quantize_per_tensor", "scale", 0.0, "must be a positive number"),
    ("linear_qs8", "out_zp", 300, "must be an int8 value"),
    ("linear_qs8", "in_scale", -1.0, "must be a positive number"),
    ("dequantize_per_tensor", "zero_point", 1.5, "must be an int8 value"),
])
def test_static_quantization_attributes_checked(static, op, attr, value, needle):
    def e(i):
        ins = next(x for x in i.methods[0].instructions if x.op == op)
        ins.attrs[attr] = value
    load(write(static))
    _bad(static, e, needle)


def test_index_marker_count_must_match_index_inputs(gathers):
    """An index attribute marking a tensor index the instruction does not pass (fuzz find)."""
    def e(i):
        ins = next(x for x in i.methods[0].instructions if x.op == "permute")
        ins.op, ins.attrs = "getitem", {"index": ("#",)}
    _bad(gathers, e, "marks 1 tensor indices but the instruction passes 0")


@pytest.mark.parametrize("key", ["class", "not a name", "1x"])
def test_attribute_names_must_be_parameter_names(base, key):
    # each kernel call is spelled out in generated code: a hostile name must not reach it
    def e(i):
        i.methods[0].instructions[0].attrs[key] = 1
    _bad(base, e, "is not a parameter name")


def test_unknown_attribute_fails_at_call_naming_the_op(base):
    i2 = copy.deepcopy(base)
    i2.arrays = list(base.arrays)
    i2.methods[0].instructions[0].attrs["frobnicate"] = 1
    prog = load(write(i2))
    with pytest.raises(ProgramError, match=r"failed: TypeError.*frobnicate"):
        prog(np.zeros((2, 8), np.float32))


def test_slice_views_are_checked():
    """A getitem planned as a view of its input's slot (a decode step's q/k/v slices) must select
    exactly the bytes at its offset; an ordinary op's output may not live in another value's slot; a
    view's bytes must lie inside the slot it names."""
    from ..exporter.test_capture import export_llama, small_llama
    from edgetorch.runtime.verify import planned_view
    info = lower(export_llama(et.models.Decoder(small_llama()).eval()))
    m = info.methods[1]
    views = [ins for ins in m.instructions if ins.op == "getitem" and planned_view(m.values, ins)]
    assert len(views) >= 3
    k = m.instructions.index(views[1])          # the k slice: at a non-zero offset of the projection
    o = views[1].outputs[0]
    assert m.values[o].offset > m.values[views[1].inputs[0]].offset

    def shifted(i):
        i.methods[1].values[o].offset -= 4      # one element early: not what the index selects
    _bad(info, shifted, "only a reshape or a contiguous slice")

    def index(i):
        ins = i.methods[1].instructions[k]
        ins.attrs = dict(ins.attrs, index=(Ellipsis, slice(1, 1 + m.values[o].shape[-1], None)))
    _bad(info, index, "only a reshape or a contiguous slice")

    def no_index(i):                            # the fuzzer's find: a view whose index is not a tuple
        ins = i.methods[1].instructions[k]
        ins.attrs = dict(ins.attrs, index=None)
    _bad(info, no_index, "only a reshape or a contiguous slice")

    def outside(i):
        i.methods[1].values[o].offset += 1 << 20   # past the end of the slot it aliases
    _bad(info, outside, "aliases the slot")

    def not_a_view(i):
        mm = i.methods[1]
        j = next(j for j, ins in enumerate(mm.instructions) if ins.op == "rms_norm")
        v = mm.values[mm.instructions[j].outputs[0]]
        v.alias = mm.instructions[j].inputs[0]  # an rms_norm writing into its own input's slot
        v.offset = mm.values[v.alias].offset
    _bad(info, not_a_view, "only a reshape or a contiguous slice")
