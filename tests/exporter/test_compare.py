"""compare(): per-layer SQNR / max error / cosine between programs or eager and a program."""
import math

import numpy as np

import edgetorch as et
from edgetorch.exporter import Dim, compare, quantize
from edgetorch.models import MLP


def _setup():
    et.manual_seed(0)
    m = MLP((20, 32, 32, 5)).eval()
    ep = et.export(m, (et.randn(2, 20),), dynamic_shapes={"x": {0: Dim("b", max=64)}})
    return m, ep, [(et.randn(8, 20),), (et.randn(3, 20),)]


def test_float_program_matches_eager_exactly():
    m, ep, xs = _setup()
    r = compare(m, ep, xs)
    assert len(r.layers) == 3 and all(math.isinf(l[3]["sqnr_db"]) for l in r.layers)
    assert r.outputs[0]["top1"] == 1.0 and "SQNR" in str(r)


def test_int8_report_and_a_broken_layer_shows_where():
    m, ep, xs = _setup()
    q = quantize(ep)
    r = compare(ep, q, xs)
    assert all(l[3]["sqnr_db"] > 30 and l[3]["cosine"] > 0.999 for l in r.layers)
    # damage the second layer's weights in a copy: the report drops at that layer, not before
    bad = quantize(ep)
    w = next(n for n in bad.graph.nodes if n.op == "linear_q8" and n.output.name == r.layers[1][0]).inputs[1]
    w.data = np.ascontiguousarray(-w.data)
    r2 = compare(ep, bad, xs)
    s = [l[3]["sqnr_db"] for l in r2.layers]
    assert s[0] > 30 and s[1] < 5
