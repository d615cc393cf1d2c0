"""The kernels' on-disk cache is keyed by all kernel sources (edgetorch/_native/cache.py)."""
import os
import subprocess
import sys
import textwrap

from numba import njit

from edgetorch._native import cache


def test_stamp_follows_every_kernel_file(tmp_path):
    """sources_stamp changes when any file of the folders changes, not only a kernel's own."""
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    (a / "kern.py").write_text("x = 1\n")
    (b / "helper.py").write_text("y = 2\n")
    (b / "notes.txt").write_text("ignored\n")
    s0 = cache.sources_stamp([str(a), str(b)])
    assert s0 == cache.sources_stamp([str(a), str(b)])
    (b / "notes.txt").write_text("still ignored\n")
    assert cache.sources_stamp([str(a), str(b)]) == s0
    (b / "helper.py").write_text("y = 3\n")
    assert cache.sources_stamp([str(a), str(b)]) != s0


def test_kernels_use_the_stamped_locator():
    """Runtime and _native kernels (variants included) cache under the stamped locator, whose
    stamp carries the folders' hash; code elsewhere keeps Numba's own."""
    from edgetorch._native import vmath
    from edgetorch.runtime.kernels import vnni
    assert len(cache.DIRS) == 2 and all(os.path.isdir(d) for d in cache.DIRS)
    for disp in (vnni._gemv_q4p_blocks[0], vnni._gemv_q4p_rows[1], vnni._to_u8, vmath.exp_shifted):
        loc = disp._cache._impl.locator
        assert type(loc).__name__.startswith("Edgetorch") and loc.get_source_stamp()[1] == cache.STAMP
        assert loc.get_source_stamp()[2] == disp.py_func.__module__

    @njit(cache=True)
    def elsewhere(x):
        return x + 1
    assert elsewhere(1) == 2
    assert not type(elsewhere._cache._impl.locator).__name__.startswith("Edgetorch")


def _package(tmp_path, kern):
    """A package kpkg under tmp_path with the module kern.py holding `kern` (source text)."""
    pkg = tmp_path / "kpkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "kern.py").write_text(textwrap.dedent(kern))
    return pkg


# a child that stamps the folder `pkg` like the kernel folders, then prints k(arg) of the module `name`
# imported with `root` first on sys.path: argv = root, pkg, name, arg
_CHILD = textwrap.dedent("""
    import importlib
    import sys
    sys.path.insert(0, sys.argv[1])
    from edgetorch._native import cache
    cache.DIRS.append(sys.argv[2])
    cache.STAMP = cache.sources_stamp(cache.DIRS)
    mod = importlib.import_module(sys.argv[3])
    print(mod.k(int(sys.argv[4])), type(mod.k._cache._impl.locator).__name__)
""")


def _child(root, pkg, name, arg):
    env = dict(os.environ)
    env.pop("NUMBA_CACHE_DIR", None)
    r = subprocess.run([sys.executable, "-c", _CHILD, str(root), str(pkg), name, str(arg)], capture_output=True,
                       text=True, env=env, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    return r.stdout.split()


def test_a_changed_helper_recompiles_its_users(tmp_path):
    """End to end, in child processes: a cached kernel that inlines a helper from another file of a
    stamped folder gives the new answer after only the helper's file changed (Numba alone would
    load the stale code: its stamp hashes the kernel's own file), and loads from the cache when
    nothing changed."""
    pkg = _package(tmp_path, """
        from numba import njit
        from .helper import h

        @njit(cache=True)
        def k(x):
            return h(x) * 10
    """)
    got, stamps = [], []
    for body in ("return x + 1", "return x + 2", "return x + 2"):
        (pkg / "helper.py").write_text(f"from numba import njit\n\n@njit(inline='always')\ndef h(x):\n    {body}\n")
        got.append(_child(tmp_path, pkg, "kpkg.kern", 1))
        stamps.append([p.stat().st_mtime_ns for p in sorted(pkg.glob("__pycache__/kern.k-*.nbi"))])
    assert [g[0] for g in got] == ["20", "30", "30"]
    assert got[0][1] == "EdgetorchInTreeCacheLocator"
    assert stamps[2] and stamps[2] == stamps[1]         # the third run loaded what the second cached


def test_an_entry_cached_under_another_module_name_is_recompiled(tmp_path):
    """A kernel file imported under two names (a source checkout: `edgetorch.runtime.kernels.x`, or
    `runtime.kernels.x` from the repository root) shares one cache file; an entry pickles the module
    it was compiled in, and Numba alone fails to load it under the other name when that one cannot
    be imported.  The stamp carries the module name, so the other name recompiles instead."""
    pkg = _package(tmp_path, """
        from numba import njit

        @njit(cache=True)
        def k(x):
            if x < 0:
                raise ValueError("negative")
            return x * 2
    """)
    for root, name in ((tmp_path, "kpkg.kern"), (pkg, "kern"), (tmp_path, "kpkg.kern")):
        assert _child(root, pkg, name, 21)[0] == "42"
