"""Numba's on-disk cache, made to notice changes in the kernels' shared code.

Numba keys a cached function by its own source file only (numba 0.68: a
sha256 of that file's bytes).  A kernel inlines code from other files: the
`simd` intrinsics' code generators, `inline="always"` helpers, the constants
`jit.variant` binds.  When only such a file changes, the kernel's file hashes
the same and Numba loads its stale machine code: a silent wrong answer (seen in
session 13: a layout helper changed in vnni.py, and quant.py's cached function
that inlined it kept the old layout; every result was wrong until the cache was
cleared).

`install()` puts locators in front of Numba's own for the functions defined in
the kernel folders (edgetorch/_native and the runtime's kernels): the same
places on disk, with a source stamp that adds a sha256 over every .py file of
those folders (any change there recompiles all their kernels once; other
code caches as before) and the defining module's name (a source checkout can
import a kernel file as `edgetorch.runtime.kernels.x` or, from the repository
root, as `runtime.kernels.x`; a cached entry pickles the module it was
compiled in, and one written under the other name failed to load, "No module
named 'runtime'", instead of being recompiled).  Installed when
edgetorch._native is imported, before any kernel is defined.
"""
import hashlib
import os

from numba.core import caching

_HERE = os.path.dirname(os.path.abspath(__file__))


def _kernel_dirs():
    """edgetorch/_native and the runtime's kernels, wherever the `edgetorch.runtime` package lives
    (runtime/ beside edgetorch/ in a source checkout, edgetorch/runtime/ in an installed wheel:
    pyproject's package-dir)."""
    import importlib.util
    try:
        spec = importlib.util.find_spec("edgetorch.runtime")
    except (ImportError, ValueError):
        spec = None
    dirs = [_HERE]
    if spec is not None and spec.origin:
        kernels = os.path.join(os.path.dirname(spec.origin), "kernels")
        if os.path.isdir(kernels):
            dirs.append(kernels)
    return dirs


def sources_stamp(dirs):
    """A sha256 (hex) over the names and bytes of the .py files directly in `dirs`, in a fixed order."""
    h = hashlib.sha256()
    for d in dirs:
        for name in sorted(os.listdir(d)):
            if name.endswith(".py"):
                h.update(name.encode() + b"\0")
                with open(os.path.join(d, name), "rb") as f:
                    h.update(f.read())
    return h.hexdigest()


DIRS = _kernel_dirs()
STAMP = sources_stamp(DIRS)


def _ours(py_file):
    return os.path.dirname(os.path.abspath(py_file)) in DIRS


def _stamped(base):
    class Stamped(base):
        _edgetorch = True
        _module = None

        def get_source_stamp(self):
            return super().get_source_stamp(), STAMP, self._module

        @classmethod
        def from_function(cls, py_func, py_file):
            if not _ours(py_file):
                return None
            self = super().from_function(py_func, py_file)
            if self is not None:
                self._module = py_func.__module__
            return self
    Stamped.__name__ = Stamped.__qualname__ = "Edgetorch" + base.__name__
    return Stamped


def install():
    """Put the stamped locators first (once); a Numba without these classes keeps its own."""
    impl = getattr(caching, "CacheImpl", None)
    classes = getattr(impl, "_locator_classes", None)
    if classes is None or any(getattr(c, "_edgetorch", False) for c in classes):
        return
    bases = [getattr(caching, n, None) for n in ("UserProvidedCacheLocator", "InTreeCacheLocator",
                                                 "UserWideCacheLocator")]
    classes[:0] = [_stamped(b) for b in bases if b is not None]
