"""The thread set-up done by edgetorch._native (imported by the runtime): the OpenMP spin count
and OpenBLAS's idle-thread timeout, unless the user chose them, and the threading layer."""
import json
import os
import subprocess
import sys

CODE = """
import json, os, sys
pre = sys.argv[1] == "numpy-first"
if pre:
    import numpy
import edgetorch.runtime as rt
info = rt.threads.info()
print(json.dumps({"gomp": os.environ.get("GOMP_SPINCOUNT"), "blas": os.environ.get("OPENBLAS_THREAD_TIMEOUT"),
                  "layer": info["numba_threading_layer"], "simd": info["simd"]}))
"""


def _run(order, **env):
    e = {k: v for k, v in os.environ.items() if k not in ("GOMP_SPINCOUNT", "OPENBLAS_THREAD_TIMEOUT",
                                                           "OMP_WAIT_POLICY", "EDGETORCH_VNNI", "NUMBA_CPU_NAME",
                                                           "NUMBA_CPU_FEATURES")}
    e.update(env)
    r = subprocess.run([sys.executable, "-c", CODE, order], env=e, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout.strip().splitlines()[-1])


def test_defaults_whichever_is_imported_first():
    for order in ("runtime-first", "numpy-first"):
        got = _run(order)
        assert got["gomp"] == "20000" and got["blas"] == "4"
        assert got["layer"] in ("omp", "tbb")


def test_user_settings_win():
    got = _run("numpy-first", GOMP_SPINCOUNT="100", OPENBLAS_THREAD_TIMEOUT="12")
    assert got["gomp"] == "100" and got["blas"] == "12"
    got = _run("runtime-first", OMP_WAIT_POLICY="PASSIVE")
    assert got["gomp"] is None


def test_blas_restart_is_done_once_and_harmless():
    code = ("import numpy as np; import edgetorch.runtime; from edgetorch._native import threads; "
            "a = np.ones((300, 300), np.float32); s = float((a @ a).sum()); "
            "print(threads.shorten_blas_spin(), s)")
    e = {k: v for k, v in os.environ.items() if k != "OPENBLAS_THREAD_TIMEOUT"}
    r = subprocess.run([sys.executable, "-c", code], env=e, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["[]", str(300.0 * 300 * 300)]    # already done at import; BLAS still right


def test_simd_kernels_are_reported_and_vnni_can_be_turned_off():
    import llvmlite.binding as ll
    feats = ll.get_host_cpu_features()
    got = _run("runtime-first")
    assert got["simd"]["avx512_vnni"] == bool(feats.get("avx512vnni") and feats.get("avx512vl"))
    assert got["simd"]["avx2_fma"] == bool(feats.get("avx2") and feats.get("fma"))
    assert _run("runtime-first", EDGETORCH_VNNI="0")["simd"]["avx512_vnni"] is False
    # a user-named LLVM target may lack the instructions: both families off, the portable kernels run
    assert _run("runtime-first", NUMBA_CPU_NAME="generic")["simd"] == {"avx512_vnni": False, "avx2_fma": False}
