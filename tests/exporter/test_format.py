"""The .etp format: round trip, header and version rules, golden file, generated bindings."""
import os
import struct
import subprocess
import sys

import numpy as np
import pytest

import edgetorch as et
from edgetorch._errors import ProgramError
from edgetorch.exporter import Dim, read
from edgetorch.exporter.reference import ReferenceProgram
from edgetorch.models import MLP, Decoder
from edgetorch.schemas import format as F
from edgetorch.schemas.writer import write

from .test_capture import export_llama, small_llama

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DATA = os.path.join(ROOT, "tests", "data")


def _mlp_bytes():
    et.manual_seed(0)
    m = MLP((20, 16, 5)).eval()
    return m, et.export(m, (et.randn(3, 20),), dynamic_shapes={"x": {0: Dim("batch", max=64)}},
                        metadata={"labels": "a,b,c,d,e"})


def test_round_trip_is_byte_identical_and_runs(tmp_path):
    m, ep = _mlp_bytes()
    n = ep.save(tmp_path / "m.etp")
    data = (tmp_path / "m.etp").read_bytes()
    assert n == len(data) and data[4:8] == b"ETP1"
    info = read(tmp_path / "m.etp")
    assert write(info) == data
    assert info.metadata["labels"] == "a,b,c,d,e" and info.methods[0].dims == [("batch", 1, 64)]
    seg = struct.unpack_from("<4sIQQQ", data, 8)[3]
    assert seg % 64 == 0 and all(c.offset % 64 == 0 for c in info.constants)
    x = et.randn(5, 20)
    with et.no_grad():
        np.testing.assert_allclose(ReferenceProgram(info).run("forward", x.numpy())[0], m(x).numpy(), atol=1e-5)


def test_llama_program_shares_constants_and_state(tmp_path):
    et.manual_seed(0)
    m = Decoder(small_llama()).eval()
    ep = export_llama(m)
    ep.save(tmp_path / "l.etp")
    info = read(tmp_path / "l.etp")
    assert write(info) == (tmp_path / "l.etp").read_bytes()        # round trip
    from edgetorch.runtime import load
    load(tmp_path / "l.etp")                                      # verifies
    assert [mm.name for mm in info.methods] == ["prefill", "decode"]
    names = [c.name for c in info.constants]
    assert len(names) == len(set(names)) and "model.embed_tokens.weight" in names
    assert "lm_head.weight" not in names   # tied: stored once
    n_params = sum(p.numel() for p in m.parameters())
    assert sum(c.nbytes for c in info.constants) < 4 * n_params + 4096
    assert len(info.states) == 4 and info.metadata["bos_id"] == "1"
    ref = ReferenceProgram(info)
    ids = et.randint(0, 128, (1, 7))
    with et.no_grad():
        full = m(ids).numpy()
    out = [ref.run("prefill", ids.numpy()[:, :4], np.array([0]))[0]]
    for i in range(4, 7):
        out.append(ref.run("decode", ids.numpy()[:, i:i + 1], np.array([i]))[0])
    np.testing.assert_allclose(np.concatenate(out, 1), full, atol=1e-5)


def test_identical_constants_are_stored_once():
    class Twice(et.nn.Module):
        def __init__(self):
            super().__init__()
            self.a = et.nn.Linear(8, 8)
            self.b = et.nn.Linear(8, 8)
            self.b.load_state_dict(self.a.state_dict())

        def forward(self, x):
            return self.a(x) + self.b(x)

    info = read(et.export(Twice(), (et.randn(2, 8),), optimize=["dce"]).to_bytes())
    assert len(info.constants) == 2


def _patch_version(data, major, minor):
    info = read(data)
    info.version = (major, minor)
    return write(info)


def test_version_rules():
    _, ep = _mlp_bytes()
    data = ep.to_bytes()
    with pytest.raises(ProgramError, match=r"version 2.0 is not supported.*upgrade"):
        read(_patch_version(data, F.VERSION[0] + 1, 0))
    with pytest.raises(ProgramError, match="not supported"):
        read(_patch_version(data, F.VERSION[0], F.VERSION[1] + 1))
    assert read(_patch_version(data, F.VERSION[0], 0)).version == (F.VERSION[0], 0)


def test_golden_file_from_v1_0_still_loads_and_computes_the_same():
    path = os.path.join(DATA, "golden_mlp_v1_0.etp")
    info = read(path)
    assert info.version == (1, 0) and info.metadata["purpose"] == "golden file"
    ref = np.load(os.path.join(DATA, "golden_mlp_v1_0.npz"))
    np.testing.assert_allclose(ReferenceProgram(info).run("forward", ref["x"])[0], ref["y"], atol=1e-5)


@pytest.mark.parametrize("mutate,needle", [
    (lambda d: d[:30], "too small"),
    (lambda d: d[:4] + b"ABCD" + d[8:], "file identifier"),
    (lambda d: d[:8] + b"EHXX" + d[12:], "header"),
    (lambda d: d + b"\0" * 64, "header sizes"),
    (lambda d: d[:-1], "header sizes"),
    (lambda d: (10 ** 6).to_bytes(4, "little") + d[4:], "root table"),
])
def test_damaged_containers_are_refused(mutate, needle):
    _, ep = _mlp_bytes()
    with pytest.raises(ProgramError, match=needle):
        read(mutate(ep.to_bytes()))


def test_corrupt_constants_fail_the_checksum():
    _, ep = _mlp_bytes()
    d = bytearray(ep.to_bytes())
    d[-5] ^= 0xFF
    with pytest.raises(ProgramError, match="checksum"):
        read(bytes(d))


def test_missing_and_non_program_files(tmp_path):
    with pytest.raises(ProgramError, match="no such program"):
        read(tmp_path / "nope.etp")
    (tmp_path / "empty.etp").write_bytes(b"")
    with pytest.raises(ProgramError, match="empty"):
        read(tmp_path / "empty.etp")


def test_bindings_match_the_schema():
    r = subprocess.run([sys.executable, os.path.join(ROOT, "tools", "gen_schema.py"), "--check"],
                       capture_output=True, text=True)
    if "flatc not found" in r.stderr + r.stdout:
        pytest.skip("flatc is not installed")
    assert r.returncode == 0, r.stdout + r.stderr


def test_inspect_cli(tmp_path, capsys):
    from edgetorch.cli import main
    _, ep = _mlp_bytes()
    ep.save(tmp_path / "m.etp")
    assert main(["inspect", str(tmp_path / "m.etp"), "--graph"]) == 0
    out = capsys.readouterr().out
    for needle in (f"format       {F.VERSION[0]}.{F.VERSION[1]}", "dims       batch in [1, 64]", "x: float32[batch, 20]", "arena",
                   "op histogram", "fused_linear", "quantization none", "labels=a,b,c,d,e", "float32: 4 tensors"):
        assert needle in out, needle
    (tmp_path / "bad.etp").write_bytes(b"garbage" * 20)
    assert main(["inspect", str(tmp_path / "bad.etp")]) == 2


def test_scalar_and_bfloat16_constants_keep_shape_and_dtype():
    class M(et.nn.Module):
        def __init__(self):
            super().__init__()
            self.register_buffer("s", et.tensor(2.0))
            self.register_buffer("w", et.ones(3).to(et.bfloat16))

        def forward(self, x):
            return x * self.s * self.w.float()

    info = read(et.export(M(), (et.ones(3),), optimize=["dce"]).to_bytes())
    got = {c.name: (c.dtype, c.shape) for c in info.constants}
    assert got == {"s": ("float32", ()), "w": ("bfloat16", (3,))}
    np.testing.assert_array_equal(ReferenceProgram(info).run("forward", np.ones(3, np.float32))[0], [2, 2, 2])


def _reference_programs():
    from edgetorch.models import Encoder, ResNet

    from .test_capture import small_bert
    et.manual_seed(0)
    m = MLP().eval()
    yield "mlp", m, et.export(m, (et.randn(2, 784),), dynamic_shapes={"x": {0: Dim("batch", max=64)}}), \
        [(et.randn(5, 784),)]
    r = ResNet().eval()
    yield "resnet", r, et.export(r, (et.randn(2, 3, 32, 32),)), [(et.randn(2, 3, 32, 32),)]
    e = Encoder(small_bert()).eval()
    b, s = Dim("batch", max=8), Dim("seq", max=40)
    yield "encoder", e, et.export(e, (et.randint(1, 97, (2, 5)), et.ones(2, 5, dtype="int64")),
                                  dynamic_shapes={"input_ids": {0: b, 1: s}, "attention_mask": {0: b, 1: s}}), \
        [(et.randint(1, 97, (3, 9)), et.ones(3, 9, dtype="int64"))]


@pytest.mark.parametrize("name,model,ep,calls", list(_reference_programs()), ids=lambda x: x if isinstance(x, str) else "")
def test_reference_models_round_trip(name, model, ep, calls, tmp_path):
    ep.save(tmp_path / "m.etp")
    data = (tmp_path / "m.etp").read_bytes()
    info = read(tmp_path / "m.etp")
    assert write(info) == data
    from edgetorch.runtime import load
    load(tmp_path / "m.etp")                                      # verifies
    ref = ReferenceProgram(info)
    for args in calls:
        with et.no_grad():
            want = model(*args).numpy()
        np.testing.assert_allclose(ref.run("forward", *[a.numpy() for a in args])[0], want, atol=1e-5)
