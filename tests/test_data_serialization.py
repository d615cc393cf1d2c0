"""DataLoader batching and et.save / et.load (safetensors, torch-written files)."""
import numpy as np
import pytest

import edgetorch as et
from edgetorch.utils.data import DataLoader, Dataset, TensorDataset


def test_dataloader_batches_shuffle_drop_last():
    ds = TensorDataset(et.arange(10).float().unsqueeze(1), et.arange(10))
    assert [len(b[1]) for b in DataLoader(ds, batch_size=4)] == [4, 4, 2]
    assert [len(b[1]) for b in DataLoader(ds, batch_size=4, drop_last=True)] == [4, 4]
    a = [b[1].tolist() for b in DataLoader(ds, batch_size=5, shuffle=True, generator=et.Generator(7))]
    b = [b[1].tolist() for b in DataLoader(ds, batch_size=5, shuffle=True, generator=et.Generator(7))]
    assert a == b and sorted(sum(a, [])) == list(range(10)) and a != [[0, 1, 2, 3, 4], [5, 6, 7, 8, 9]]


def test_collate_dicts_and_tuples():
    class D(Dataset):
        def __len__(self):
            return 5

        def __getitem__(self, i):
            return {"x": np.full(3, i, np.float32), "y": i}

    batches = list(DataLoader(D(), batch_size=2))
    assert batches[0]["x"].shape == (2, 3) and batches[2]["y"].tolist() == [4]


def test_save_load_round_trip(tmp_path):
    m = et.nn.Linear(3, 2)
    et.save(m.state_dict(), tmp_path / "m.safetensors")
    sd = et.load(tmp_path / "m.safetensors")
    assert set(sd) == {"weight", "bias"}
    np.testing.assert_array_equal(sd["weight"].numpy(), m.weight.detach().numpy())
    with pytest.raises(et.EdgeTorchError, match="never pickles"):
        et.save(m, tmp_path / "x")
    (tmp_path / "bad.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00garbage")
    with pytest.raises(et.EdgeTorchError, match="not a valid safetensors"):
        et.load(tmp_path / "bad.safetensors")


@pytest.mark.oracle
def test_load_torch_written_half_precision(tmp_path):
    torch = pytest.importorskip("torch")
    st = pytest.importorskip("safetensors.torch")
    w = torch.randn(4, 3)
    st.save_file({"bf": w.to(torch.bfloat16), "fp16": w.half(), "i": torch.arange(3)}, str(tmp_path / "t.safetensors"))
    sd = et.load(tmp_path / "t.safetensors")
    assert sd["bf"].dtype is et.bfloat16 and sd["fp16"].dtype is et.float16 and sd["i"].dtype is et.int64
    np.testing.assert_allclose(sd["bf"].float().numpy(), w.to(torch.bfloat16).float().numpy())


def test_save_keeps_zero_dim_tensors(tmp_path):
    m = et.nn.BatchNorm2d(3)
    et.save(m.state_dict(), tmp_path / "bn.safetensors")
    sd = et.load(tmp_path / "bn.safetensors")
    assert sd["num_batches_tracked"].shape == ()
    et.nn.BatchNorm2d(3).load_state_dict(sd)
