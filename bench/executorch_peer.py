"""ExecuTorch (XNNPACK delegate, fp32) on the benchmark models, for bench/runtime_bench.py.

    python bench/executorch_peer.py mlp:1    # prints JSON: [median seconds, max |diff| vs torch]
    python bench/executorch_peer.py llama:128   # decode a token at a 128-token context

One case per process: an ExecuTorch failure can abort the interpreter.

Needs `pip install -c c.txt executorch==1.5.1`, c.txt holding `torch==2.13.0+cpu` (so that pip
keeps the local torch: it installs beside it); the
runtime benchmark calls this in a child process and reports "not installed"
when the import fails. Weights: the same seeded edgetorch models, copied
into the PyTorch twins of bench/peers.py, exported with torch.export and
lowered with XnnpackPartitioner.
"""
from __future__ import annotations

import json
import os
import sys
import warnings

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from _timing import timeit  # noqa: E402


def lower(torch_model, args):
    import torch
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.exir import to_edge_transform_and_lower
    from executorch.runtime import Runtime
    ep = torch.export.export(torch_model, tuple(args))
    prog = to_edge_transform_and_lower(ep, partitioner=[XnnpackPartitioner()]).to_executorch()
    return Runtime.get().load_program(prog.buffer).load_method("forward")


# the llama::sdpa_with_kv_cache custom op (KV-cache update and attention in one kernel), as ExecuTorch's
# export_llama flow uses it (its -kv --use_sdpa_with_kv_cache): 4.97 ms a token here against 5.97 without;
# ET_SDPA_OP=0 lowers the plain attention
SDPA_OP = os.environ.get("ET_SDPA_OP", "1") == "1"


def llama(ctx, repeats=7):
    """ExecuTorch's own Llama (examples/models/llama: KV cache, HF-style rotary) on the decode
    benchmark's 15M-shaped Decoder and weights, lowered to XNNPACK fp32 here (torch.export and
    XnnpackPartitioner; not its hydra-configured export_llama script, whose other source transforms
    this skips); decode at position ctx after ctx tokens fed one at a time. Prints [median seconds a
    token, max |logit diff| vs edgetorch's eager Decoder over the same tokens]."""
    import numpy as np
    import torch
    from executorch.examples.models.llama.llama_transformer import construct_transformer
    from executorch.examples.models.llama.model_args import ModelArgs
    from runtime_bench import llama_model
    torch.set_num_threads(2)
    if SDPA_OP:
        import executorch.extension.llm.custom_ops.custom_ops  # noqa: F401  (registers llama::sdpa_with_kv_cache)
    m = llama_model()
    c = m.config
    args = ModelArgs(dim=c.hidden_size, n_layers=c.num_hidden_layers, n_heads=c.num_attention_heads,
                     n_kv_heads=c.num_key_value_heads, vocab_size=c.vocab_size, hidden_dim=c.intermediate_size,
                     norm_eps=c.rms_norm_eps, rope_theta=c.rope_theta, max_seq_len=c.max_position_embeddings,
                     max_context_len=c.max_position_embeddings, use_kv_cache=True, use_hf_rope=True,
                     use_sdpa_with_kv_cache_op=SDPA_OP, generate_full_logits=False)
    tm = construct_transformer(args).eval()
    names = {"self_attn.q_proj": "attention.wq", "self_attn.k_proj": "attention.wk", "self_attn.v_proj": "attention.wv",
             "self_attn.o_proj": "attention.wo", "mlp.gate_proj": "feed_forward.w1", "mlp.up_proj": "feed_forward.w3",
             "mlp.down_proj": "feed_forward.w2", "input_layernorm": "attention_norm",
             "post_attention_layernorm": "ffn_norm"}
    sd = {}
    for k, v in m.state_dict().items():
        t = torch.tensor(np.asarray(v.numpy(), dtype=np.float32))
        if k == "model.embed_tokens.weight":
            sd["tok_embeddings.weight"] = t
        elif k == "model.norm.weight":
            sd["norm.weight"] = t
        elif k == "lm_head.weight":
            sd["output.weight"] = t
        elif k.startswith("model.layers."):
            i, rest = k[len("model.layers."):].split(".", 1)
            mod, leaf = rest.rsplit(".", 1)
            sd[f"layers.{i}.{names[mod]}.{leaf}"] = t
    missing, unexpected = tm.load_state_dict(sd, strict=False)
    if unexpected or [k for k in missing if "cache" not in k and "freqs" not in k and "mask" not in k]:
        raise RuntimeError(f"weights did not map: missing {missing}, unexpected {unexpected}")
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.exir import to_edge_transform_and_lower
    from executorch.runtime import Runtime
    ex = (torch.tensor([[1]]), {"input_pos": torch.tensor([0])})
    with torch.no_grad():
        ep = torch.export.export(tm, ex, strict=False)
    prog = to_edge_transform_and_lower(ep, partitioner=[XnnpackPartitioner()]).to_executorch()
    method = Runtime.get().load_program(prog.buffer).load_method("forward")
    ids = np.random.default_rng(0).integers(0, c.vocab_size, size=(1, ctx))
    import edgetorch as et
    with et.no_grad():                          # the reference: edgetorch's eager Decoder, full sequence
        ref = m(et.tensor(ids)).numpy()[0]
    err = 0.0
    for p in range(ctx):
        out = method.execute([torch.tensor(ids[:, p:p + 1]), torch.tensor([p])])[0].numpy().reshape(-1)
        err = max(err, float(np.abs(out - ref[p]).max()))
    tok, pos = torch.tensor([[7]]), torch.tensor([ctx])
    print(json.dumps([timeit(lambda: method.execute([tok, pos]), repeats), err]))


def main(case, repeats=7):
    warnings.simplefilter("ignore")
    if case.startswith("llama:"):
        return llama(int(case.split(":")[1]), repeats)
    import numpy as np
    import torch
    torch.set_num_threads(2)
    import peers
    from runtime_bench import _inputs, models
    want_kind, want_batch = case.split(":")
    for name, model, kind, cases, _ in models(False):
        if kind != want_kind:
            continue
        tm = {"mlp": peers.torch_mlp, "resnet": peers.torch_resnet, "bert": peers.torch_bert}[kind](model)
        for _, shape in cases:
            if shape[0] != int(want_batch):
                continue
            xs = [torch.tensor(a) for a in _inputs(kind, shape)]
            method = lower(tm, xs)
            res = method.execute(xs)
            with torch.no_grad():
                err = float(np.abs(res[0].numpy() - tm(*xs).numpy()).max())
            print(json.dumps([timeit(lambda: method.execute(xs), repeats), err]))
            return


def run_case(case, timeout=900):
    """Median seconds per call, or a string saying why there is none."""
    import subprocess
    r = subprocess.run([sys.executable, os.path.abspath(__file__), case], capture_output=True, text=True,
                       timeout=timeout)
    lines = [ln for ln in r.stdout.splitlines() if ln.startswith("[")]
    if not lines:      # (ExecuTorch may also abort at interpreter exit, after printing)
        # torchao's optional CUDA extensions log "Failed to load ..." on every import: not the failure
        err = [ln for ln in (r.stderr or "").splitlines()
               if ("No module named" in ln or "fail" in ln.lower() or "Error" in ln) and "cpuinfo" not in ln
               and "torchao" not in ln]
        if any("No module named" in ln for ln in err):
            return "not installed"
        if r.returncode < 0 or r.returncode > 128:
            sig = -r.returncode if r.returncode < 0 else r.returncode - 128
            return f"crashed (signal {sig})" + (f": {err[-1].split(']')[-1].strip()[:60]}" if err else "")
        return "failed (" + (err[-1].split("]")[-1].strip()[:70] if err else f"exit {r.returncode}") + ")"
    return json.loads(lines[-1])[0]


if __name__ == "__main__":
    main(sys.argv[1])
