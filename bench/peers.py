"""Peer models for the benchmarks: PyTorch twins of the reference models
carrying the same weights, and their ONNX Runtime sessions."""
from __future__ import annotations

import io

import numpy as np


def torch_state(model):
    import torch
    return {k: torch.tensor(np.asarray(v.numpy(), dtype=np.float32) if v.dtype.is_floating_point else v.numpy())
            for k, v in model.state_dict().items()}


def torch_mlp(et_model):
    import torch.nn as tnn
    sizes = et_model.sizes
    layers = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(tnn.Linear(a, b))
        if i < len(sizes) - 2:
            layers.append(tnn.ReLU())
    m = tnn.Sequential(*layers)
    sd = {}
    for k, v in torch_state(et_model).items():
        _, i, name = k.split(".")
        sd[f"{2 * int(i)}.{name}"] = v
    m.load_state_dict(sd)
    return m.eval()


def torch_resnet(et_model):
    import torch
    import torch.nn as tnn

    class Block(tnn.Module):
        def __init__(self, cin, cout, stride):
            super().__init__()
            self.conv1 = tnn.Conv2d(cin, cout, 3, stride, 1, bias=False)
            self.bn1 = tnn.BatchNorm2d(cout)
            self.conv2 = tnn.Conv2d(cout, cout, 3, 1, 1, bias=False)
            self.bn2 = tnn.BatchNorm2d(cout)
            self.shortcut = tnn.Identity() if stride == 1 and cin == cout else tnn.Sequential(
                tnn.Conv2d(cin, cout, 1, stride, bias=False), tnn.BatchNorm2d(cout))

        def forward(self, x):
            y = torch.relu(self.bn1(self.conv1(x)))
            return torch.relu(self.bn2(self.conv2(y)) + self.shortcut(x))

    class Net(tnn.Module):
        def __init__(self):
            super().__init__()
            self.stem = tnn.Sequential(tnn.Conv2d(3, 16, 3, 1, 1, bias=False), tnn.BatchNorm2d(16), tnn.ReLU())
            self.layers = tnn.Sequential(Block(16, 16, 1), Block(16, 32, 2), Block(32, 64, 2))
            self.fc = tnn.Linear(64, 10)

        def forward(self, x):
            return self.fc(torch.flatten(torch.nn.functional.adaptive_avg_pool2d(self.layers(self.stem(x)), 1), 1))

    m = Net()
    m.load_state_dict(torch_state(et_model))
    return m.eval()


def torch_bert(et_model):
    import transformers
    c = et_model.config
    hc = transformers.BertConfig(vocab_size=c.vocab_size, hidden_size=c.hidden_size,
                                 num_hidden_layers=c.num_hidden_layers, num_attention_heads=c.num_attention_heads,
                                 intermediate_size=c.intermediate_size,
                                 max_position_embeddings=c.max_position_embeddings, layer_norm_eps=c.layer_norm_eps)
    m = transformers.BertModel(hc, add_pooling_layer=True)
    m.load_state_dict(torch_state(et_model), strict=False)
    return _BertOut(m).eval()


def _bert_out_cls():
    import torch

    class BertOut(torch.nn.Module):
        """(input_ids, attention_mask) -> last_hidden_state, for tracing and timing."""

        def __init__(self, m):
            super().__init__()
            self.m = m

        def forward(self, input_ids, attention_mask):
            return self.m(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
    return BertOut


def _BertOut(m):
    return _bert_out_cls()(m)


def torch_llama(et_model):
    import transformers
    c = et_model.config
    hc = transformers.LlamaConfig(vocab_size=c.vocab_size, hidden_size=c.hidden_size,
                                  intermediate_size=c.intermediate_size, num_hidden_layers=c.num_hidden_layers,
                                  num_attention_heads=c.num_attention_heads,
                                  num_key_value_heads=c.num_key_value_heads,
                                  max_position_embeddings=c.max_position_embeddings, rms_norm_eps=c.rms_norm_eps,
                                  rope_theta=c.rope_theta, tie_word_embeddings=c.tie_word_embeddings)
    m = transformers.LlamaForCausalLM(hc)
    m.load_state_dict(torch_state(et_model), strict=False)
    return m.eval()


def ort_session(torch_model, example_args, input_names, dynamic_axes, threads=2, quantize_dynamic=False):
    """Export with torch.onnx.export (opset 17) and open an ONNX Runtime session; with
    quantize_dynamic=True the model first goes through onnxruntime.quantization.quantize_dynamic
    (int8 weights, activations quantized at run time: ORT's dynamic scheme)."""
    import warnings

    import onnxruntime as ort
    import torch
    f = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(torch_model, tuple(example_args), f, opset_version=17, dynamo=False,
                          input_names=input_names, output_names=["out"], dynamic_axes=dynamic_axes)
    model = f.getvalue()
    if quantize_dynamic:
        import os
        import tempfile

        from onnxruntime.quantization import QuantType
        from onnxruntime.quantization import quantize_dynamic as qd
        with tempfile.TemporaryDirectory() as d:
            src, dst = os.path.join(d, "f32.onnx"), os.path.join(d, "q8.onnx")
            with open(src, "wb") as fh:
                fh.write(model)
            qd(src, dst, weight_type=QuantType.QInt8)
            with open(dst, "rb") as fh:
                model = fh.read()
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    return ort.InferenceSession(model, so, providers=["CPUExecutionProvider"])
