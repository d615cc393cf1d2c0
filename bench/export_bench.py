"""Export and save speed on the stories15M-shaped Llama decoder.

    python bench/export_bench.py

Reports: capture + passes + dynamic-dim verification time for the
prefill and decode methods, lowering (memory plan + constant dedup) time,
serialization time and save throughput (MB/s) next to a plain write of the
same bytes (the I/O bound).
"""
from __future__ import annotations

import os
import tempfile
import time

import edgetorch as et
from edgetorch.exporter import Dim
from edgetorch.exporter.serialize import lower
from edgetorch.models import Decoder, DecoderConfig
from edgetorch.schemas.writer import write


def main():
    cfg = DecoderConfig(vocab_size=32000, hidden_size=288, intermediate_size=768, num_hidden_layers=6,
                        num_attention_heads=6, num_key_value_heads=6, max_position_embeddings=256)
    et.manual_seed(0)
    m = Decoder(cfg).eval()
    n = sum(p.numel() for p in m.parameters())
    seq = Dim("seq", min=1, max=cfg.max_position_embeddings)
    t0 = time.perf_counter()
    ep = et.export_methods(m, {
        "prefill": (m, (et.randint(0, 32000, (1, 8)), et.tensor([0])), {"input_ids": {1: seq}}),
        "decode": (m, (et.randint(0, 32000, (1, 1)), et.tensor([8]))),
    })
    t_export = time.perf_counter() - t0
    t0 = time.perf_counter()
    info = lower(ep)
    t_lower = time.perf_counter() - t0
    t0 = time.perf_counter()
    data = write(info)
    t_write = time.perf_counter() - t0
    with tempfile.TemporaryDirectory() as d:
        p = os.path.join(d, "m.etp")
        t0 = time.perf_counter()
        ep.save(p)
        t_save = time.perf_counter() - t0
        t0 = time.perf_counter()
        with open(os.path.join(d, "raw.bin"), "wb") as f:
            f.write(data)
        t_raw = time.perf_counter() - t0
    mb = len(data) / 1e6
    print(f"Llama decoder {n / 1e6:.1f} M parameters, file {mb:.1f} MB")
    print("| step | time | throughput |")
    print("| --- | --- | --- |")
    print(f"| export (capture, passes, min/mid/max verification), 2 methods | {t_export:.2f} s | |")
    print(f"| lower (memory plan, constant dedup) | {t_lower:.2f} s | |")
    print(f"| serialize to bytes | {t_write:.2f} s | {mb / t_write:.0f} MB/s |")
    print(f"| ep.save (lower + serialize + write) | {t_save:.2f} s | {mb / t_save:.0f} MB/s |")
    print(f"| plain write of the same bytes (I/O bound) | {t_raw:.3f} s | {mb / t_raw:.0f} MB/s |")


if __name__ == "__main__":
    main()
