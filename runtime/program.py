"""Loaded programs: `load(path)` verifies the file, maps its constants,
allocates each method's arena once, and runs instructions by calling kernels
with preallocated outputs.

Concurrency: a method holds one arena. A call takes the method's lock; when
another thread holds it, a stateless method runs on a fresh arena of its own
(one allocation of arena size per such call), while a method that writes
program state waits, since state is shared by all callers.
"""
from __future__ import annotations

import keyword
import threading
import time
from dataclasses import dataclass

import numpy as np
from numba.core.errors import NumbaError

from edgetorch._errors import InputError, ProgramError
from edgetorch.schemas.format import DimE, eval_attr, has_dims, np_dtype
from edgetorch.schemas.reader import read
from edgetorch.symbolic import evaluate

from . import threads
from .kernels import KERNELS, PREPARE, PREPARE_GROUP
from .verify import DEFAULT_BUDGET, _numel_key, planned_view, verify  # noqa: F401 (_numel_key: tests)

# Input casts done silently: same-kind conversions (float64 -> float32,
# int32 -> int64, ...). Anything else (float -> int, int -> bool) is an InputError.
CASTING = "same_kind"


@dataclass
class TensorSpec:
    name: str
    dtype: str
    shape: tuple        # ints and dim names
    ranges: dict        # dim name -> (min, max)

    def __repr__(self):
        dims = ", ".join(str(d) for d in self.shape)
        rng = "".join(f", {k} in [{lo}, {hi}]" for k, (lo, hi) in self.ranges.items())
        return f"{self.name}: {self.dtype}[{dims}]{rng}"


class Method:
    """One method of a loaded program: `m(*arrays, **named)` -> array or tuple of arrays."""

    def __init__(self, program, info):
        self._p = program
        self.info = info
        self.name = info.name
        self._names = [d[0] for d in info.dims]
        self._lock = threading.Lock()
        self._arena = self._new_arena()
        self._cache_key = self._cache_env = None
        self._cache_runs = 0
        self._prepared = None       # the runner with prepared kernels for _cache_key's dims
        self._cache_dims = None
        # ((dtype, shape), ...) of the inputs of the call that prepared the kernels: a call with
        # C-contiguous ndarrays of exactly these dtypes and shapes has the same dims, so it skips
        # the binding and dim checks and runs the prepared steps (__call__)
        self._steady_sig = None
        self._prepared_steps = None  # and its step list (profile times these)
        vals = info.values
        self._dtypes = [np_dtype(v.dtype) for v in vals]
        self._shape_static = [all(not isinstance(d, DimE) for d in v.shape) for v in vals]
        self._const = {}
        for i, v in enumerate(vals):
            if v.kind == "constant":
                self._const[i] = program._arrays[v.constant]
        self._state_of = {i: program._info.states[v.state].name for i, v in enumerate(vals) if v.kind == "state"}
        self._writes = [(program._info.states[s].name, v) for s, v in info.state_updates]
        self._inplace = self._inplace_updates()
        self._writes = [(n, v) for n, v in self._writes if v not in self._inplace]
        self._steps = []
        for ins in info.instructions:
            o = ins.outputs[0]
            src = ins.inputs[0] if ins.inputs else -1
            if planned_view(vals, ins):
                continue    # a planned view: its arena view already shows the input's bytes
            static = not any(has_dims(a) for a in ins.attrs.values())
            self._steps.append((KERNELS[ins.op], ins.inputs, o, ins.attrs, static, ins))
        self._runner = _straight_line(self._steps)
        # readers of each value (every instruction, planned views included, the outputs and state
        # writes): a pair of steps is fused only where the second alone reads the first's output
        self._readers = {}
        for ins in info.instructions:
            for k in ins.inputs:
                self._readers[k] = self._readers.get(k, 0) + 1
        for k in list(info.outputs) + [v for _, v in info.state_updates]:
            self._readers[k] = self._readers.get(k, 0) + 1
        self.inputs = [self._spec(i, n) for i, n in zip(info.inputs, info.input_names)]
        self.outputs = [self._spec(i, n) for i, n in zip(info.outputs, info.output_names)]
        self._in_dims = []
        for k, vi in enumerate(info.inputs):
            for ax, d in enumerate(vals[vi].shape):
                if isinstance(d, DimE) and d.expr[0] == "sym":
                    self._in_dims.append((k, ax, d.expr[1]))
        self.stateful = bool(info.state_updates)
        self._in_idx, self._out_idx = tuple(info.inputs), tuple(info.outputs)
        self._fast = [(self._dtypes[vi], len(vals[vi].shape)) for vi in info.inputs]
        # input axes not set directly by a dim (the loop above checks those): static sizes and expressions
        self._derived_axes = [(k, ax, d) for k, vi in enumerate(info.inputs) for ax, d in enumerate(vals[vi].shape)
                              if not (isinstance(d, DimE) and d.expr[0] == "sym")]

    def _inplace_updates(self):
        """Values the program stores in a state's own buffer (an in-place KV-cache write;
        verified at load): value index -> state name."""
        vals = self.info.values
        return {i: self._state_of[v.alias] for i, v in enumerate(vals)
                if v.kind == "activation" and v.alias >= 0 and vals[v.alias].kind == "state"}

    def _new_arena(self):
        raw = np.empty(self.info.arena_size + 64, dtype=np.uint8)
        start = (-raw.ctypes.data) % 64
        return raw[start:start + self.info.arena_size]

    def _spec(self, vi, name):
        v = self.info.values[vi]
        shape = tuple(self._names[d.expr[1]] if isinstance(d, DimE) and d.expr[0] == "sym"
                      else (repr(d) if isinstance(d, DimE) else d) for d in v.shape)
        rng = {self._names[d.expr[1]]: tuple(self.info.dims[d.expr[1]][1:]) for d in v.shape
               if isinstance(d, DimE) and d.expr[0] == "sym"}
        return TensorSpec(name, v.dtype, shape, rng)

    # ------------------------------------------------------------------ inputs
    def _bind(self, args, named):
        if not named and len(args) == len(self._fast):
            # the common call: C-contiguous ndarrays of the right dtype and rank
            for a, (dt, rank) in zip(args, self._fast):
                if type(a) is not np.ndarray or a.dtype != dt or a.ndim != rank or not a.flags.c_contiguous:
                    break
            else:
                return list(args), self._dims_of(args)
        specs = self.inputs
        if named:
            pos = list(args) + [None] * (len(specs) - len(args))
            for k, a in named.items():
                idx = [i for i, s in enumerate(specs) if s.name == k]
                if not idx:
                    raise InputError(f"method {self.name!r} has no input named {k!r}; inputs: "
                                     f"{', '.join(s.name for s in specs)}")
                if pos[idx[0]] is not None:
                    raise InputError(f"input {k!r} given twice")
                pos[idx[0]] = a
            args = pos
        if len(args) != len(specs) or any(a is None for a in args):
            raise InputError(f"method {self.name!r} takes {len(specs)} inputs ({', '.join(map(repr, specs))}); "
                             f"got {sum(a is not None for a in args)}")
        arrays = []
        for s, a, vi in zip(specs, args, self.info.inputs):
            a = a.numpy() if hasattr(a, "numpy") and not isinstance(a, np.ndarray) else a
            a = np.asarray(a)
            want = self._dtypes[vi]
            if a.dtype != want:
                if not np.can_cast(a.dtype, want, casting=CASTING) or a.dtype.kind != want.kind and not (
                        a.dtype.kind in "iu" and want.kind in "iu"):
                    raise InputError(f"input {s.name!r}: expected {s.dtype}, got {a.dtype} (only same-kind "
                                     "casts such as float64 -> float32 or int32 -> int64 are done implicitly)")
                b = a.astype(want)
                if want.kind in "iu" and not np.array_equal(b, a):
                    raise InputError(f"input {s.name!r}: values do not fit {s.dtype} (got {a.dtype})")
                a = b
            if a.ndim != len(s.shape):
                raise InputError(f"input {s.name!r}: expected rank {len(s.shape)} {s!r}, got shape {a.shape}")
            arrays.append(a if a.flags.c_contiguous else np.ascontiguousarray(a))   # (0-d stays 0-d)
        return arrays, self._dims_of(arrays)

    def _dims_of(self, arrays):
        """The dims the inputs set, each in its range and consistent; every input dim as declared."""
        specs = self.inputs
        dims = {}
        for k, ax, i in self._in_dims:
            n = arrays[k].shape[ax]
            name, lo, hi = self.info.dims[i]
            if not lo <= n <= hi:
                raise InputError(f"input {specs[k].name!r} dim {ax} ({name}) is {n}; expected {lo} <= {name} <= {hi}")
            if dims.setdefault(i, n) != n:
                raise InputError(f"input {specs[k].name!r} dim {ax} is {n}, but {name} = {dims[i]} from another "
                                 "input")
        for k, ax, d in self._derived_axes:       # static sizes and dims computed from others
            a = arrays[k]
            want = evaluate(d.expr, dims) if isinstance(d, DimE) else d
            if a.shape[ax] != want:
                raise InputError(f"input {specs[k].name!r} dim {ax}: expected {want}, got {a.shape[ax]} "
                                 f"(shape {a.shape}, expected {specs[k]!r})")
        return dims

    # ------------------------------------------------------------------ run
    def _views(self, arena, dims):
        vals = self.info.values
        env = [None] * len(vals)
        for i, v in enumerate(vals):
            if v.kind != "activation" or i in self._inplace:
                continue
            shape = tuple(d if not isinstance(d, DimE) else evaluate(d.expr, dims) for d in v.shape)
            n = self._dtypes[i].itemsize
            for s in shape:
                n *= s
            slot = vals[v.alias] if v.alias >= 0 else v
            if v.offset < slot.offset or v.offset - slot.offset + n > slot.nbytes:
                raise ProgramError(f"value {v.name!r} of shape {shape} at {v.offset} exceeds its planned slot "
                                   f"[{slot.offset}, {slot.offset + slot.nbytes})")
            env[i] = np.ndarray(shape, self._dtypes[i], buffer=arena, offset=v.offset)
        return env

    def _run(self, arena, arrays, dims, timings=None):
        try:
            return self._run_unchecked(arena, arrays, dims, timings)
        except (ZeroDivisionError, OverflowError, MemoryError) as e:
            raise self._inconsistent(e) from None

    def _inconsistent(self, e):
        return ProgramError(f"method {self.name!r}: {type(e).__name__} while running ({e}); the program's "
                            "shapes or attributes are inconsistent")

    def _template(self, arena, dims):
        env = self._views(arena, dims)
        for i, a in self._const.items():
            env[i] = a
        for i, name in self._state_of.items():
            env[i] = self._p.state[name]
        for i, name in self._inplace.items():
            env[i] = self._p.state[name]
        return env

    def _run_unchecked(self, arena, arrays, dims, timings=None):
        if arena is self._arena:
            # arena views, constants and state for these dims are built once and reused
            key = tuple(dims.items()) if len(dims) < 2 else tuple(sorted(dims.items()))
            if self._cache_key != key:
                self._steady_sig = None
                self._cache_env = self._template(arena, dims) + [None]     # env[-1] is None: omitted inputs
                self._cache_key = key
                self._cache_dims = dict(dims)
                self._cache_runs = 0
                self._prepared = None
            env = list(self._cache_env)
        else:
            env = self._template(arena, dims) + [None]
        for k, a in zip(self.info.inputs, arrays):
            env[k] = a
        if timings is None:
            runner = self._runner
            if arena is self._arena:
                # the second call with the same dims (a decode loop, a serving batch size): prepare
                # the kernels for these shapes once; a first call of a size does not pay for it
                if self._prepared is None:
                    self._cache_runs += 1
                    if self._cache_runs == 2:
                        self._prepared = self._prepare(env, dims)
                        self._steady_sig = tuple((a.dtype, a.shape) for a in arrays)
                if self._prepared is not None:
                    runner = self._prepared
            return self._steady(runner, env, dims)
        else:
            steps = self._steps
            if arena is self._arena:
                # time what a steady call runs: the prepared kernels (and fused pairs) for these dims
                if self._prepared is None:
                    self._prepared = self._prepare(env, dims)
                steps = self._prepared_steps
            for at, (fn, ins, out, attrs, static, info) in enumerate(steps):
                if fn is _done:                 # ran inside a group's first step
                    continue
                t0 = time.perf_counter()
                try:
                    fn(env[out], *[env[k] for k in ins], **(attrs if static else
                                                            {k: eval_attr(v, dims) for k, v in attrs.items()}))
                except (InputError, ProgramError):
                    raise
                except (ValueError, IndexError, TypeError, KeyError, AttributeError, NumbaError) as e:
                    self._fail(info, e)
                dt = time.perf_counter() - t0
                ops = [info.op]
                for st in steps[at + 1:]:       # a fused group: the steps it ran, no-ops here
                    if st[0] is not _done:
                        break
                    ops.append(st[5].op)
                timings.append((info, dt, "+".join(ops)))
        return self._results(env)

    def _steady(self, runner, env, dims):
        """Run the straight-line runner on env; the results."""
        where = []
        try:
            runner(env, dims, where)
        except (InputError, ProgramError):
            raise
        except (ValueError, IndexError, TypeError, KeyError, AttributeError, NumbaError) as e:
            self._fail(self._steps[where[0]][5], e)
        except (ZeroDivisionError, OverflowError, MemoryError) as e:
            raise self._inconsistent(e) from None
        return self._results(env)

    def _results(self, env):
        for name, vi in self._writes:
            np.copyto(self._p.state[name], env[vi])
        return tuple([env[k].copy() for k in self._out_idx])    # copies: the arena is reused

    def _prepare(self, env, dims):
        """The step list with each kernel that has a preparer replaced by its prepared run for the
        arrays in env (registry.py); the same steps, so failures report the same instruction."""
        steps, n = [], 0
        skip = 0
        for at, step in enumerate(self._steps):
            fn, ins, out, attrs, static, info = step
            if skip:                        # run by a group's first step: kept as a no-op, so indices hold
                steps.append((_done, (), out, {}, True, info))
                skip -= 1
                continue
            group = self._group(at, env, dims)
            if group is not None:
                skip, fused = group
                steps.append(fused)
                n += 1
                continue
            prep = PREPARE.get(info.op)
            run = None
            if prep is not None:
                try:
                    a = attrs if static else {k: eval_attr(v, dims) for k, v in attrs.items()}
                    run = prep(env[out], *[env[k] for k in ins], **a)
                except Exception:       # the kernel itself reports what does not fit, when it runs
                    run = None
            if run is None:
                steps.append(step)
            else:
                steps.append((run, ins, out, {}, True, info))
                n += 1
        self._prepared_steps = steps
        return _straight_line(steps) if n else self._runner

    def _group(self, at, env, dims):
        """Step `at` and the next ones as one prepared step (registry.group_preparer), the longest
        group registered whose preparer takes them: (steps made no-ops after it, the step); or None."""
        if not FUSE_GROUPS:
            return None
        for n in sorted({len(k) for k in PREPARE_GROUP}, reverse=True):
            group = self._steps[at:at + n]
            prep = PREPARE_GROUP.get(tuple(st[5].op for st in group))
            if len(group) < n or prep is None:
                continue
            if any(self._readers.get(a[2]) != 1 or list(b[1]).count(a[2]) != 1 for a, b in zip(group, group[1:])):
                continue
            try:
                run = prep([env[st[2]] for st in group], [[env[k] for k in st[1]] for st in group],
                           [st[3] if st[4] else {k: eval_attr(v, dims) for k, v in st[3].items()} for st in group])
            except Exception:           # the kernels report what does not fit, when they run
                run = None
            if run is not None:
                flat = tuple(group[0][1]) + tuple(k for a, b in zip(group, group[1:]) for k in b[1] if k != a[2])
                return n - 1, (run, flat, group[-1][2], {}, True, group[0][5])
        return None

    def _fail(self, info, e):
        where = f" ({info.source}:{info.line})" if info.source else ""
        raise ProgramError(f"method {self.name!r}: {info.op}{where} failed: {type(e).__name__}: {e}") from None

    def __call__(self, *args, **named):
        sig = self._steady_sig
        if sig is not None and not named and len(args) == len(sig):
            # a steady call (the same input shapes as the call that prepared the kernels): ~2 us of
            # binding, dim checks and cache lookups fewer, a third of a batch-1 MLP's overhead
            for a, (dt, shape) in zip(args, sig):
                if type(a) is not np.ndarray or a.dtype is not dt or a.shape != shape or not a.flags.c_contiguous:
                    break
            else:
                if self._lock.acquire(blocking=self.stateful):
                    try:
                        if self._steady_sig is sig:           # still prepared for these shapes
                            env = list(self._cache_env)
                            for k, a in zip(self._in_idx, args):
                                env[k] = a
                            outs = self._steady(self._prepared, env, self._cache_dims)
                            return outs[0] if len(outs) == 1 else outs
                    finally:
                        self._lock.release()
        arrays, dims = self._bind(args, named)
        if self._lock.acquire(blocking=self.stateful):
            try:
                outs = self._run(self._arena, arrays, dims)
            finally:
                self._lock.release()
        else:
            outs = self._run(self._new_arena(), arrays, dims)
        return outs[0] if len(outs) == 1 else outs

    def profile(self, *args, **named):
        """Run once, timing every instruction as a steady call runs it (the kernels prepared for these
        shapes; a fused pair as one row, "conv2d+add_relu"); returns a Profile (print it for a
        table)."""
        arrays, dims = self._bind(args, named)
        timings = []
        with self._lock:
            self._run(self._arena, arrays, dims, timings)
        return Profile(self, timings)

    def __repr__(self):
        return f"<Method {self.name} inputs={self.inputs} outputs={self.outputs}>"


# fuse instruction groups when preparing (registry.group_preparer); off for A/B measurements
FUSE_GROUPS = True


def _done(out):
    """The step a fused pair's first step already ran."""


def _straight_line(steps):
    """The step list as one generated function, `run(env, dims, where)`: each kernel call spelled
    out with its value indices and attributes bound as constants, so a call pays no per-step
    loop, tuple unpacking, argument list or attribute dict (decode runs ~150 steps a token).
    `where` receives the failing step's index. Only names made here reach the source: kernels
    and attribute values are bound in its namespace, never formatted into it."""
    ns = {"eval_attr": eval_attr}
    body = []
    for n, (fn, ins, out, attrs, static, _) in enumerate(steps):
        ns[f"k{n}"] = fn
        args = [f"env[{int(out)}]"] + [f"env[{int(k)}]" for k in ins]
        for j, (key, val) in enumerate(attrs.items()):
            if not isinstance(key, str) or not key.isidentifier() or keyword.iskeyword(key):
                raise ProgramError(f"instruction {n}: attribute name {key!r} is not a parameter name")
            ns[f"a{n}_{j}"] = val
            args.append(f"{key}=a{n}_{j}" if static else f"{key}=eval_attr(a{n}_{j}, dims)")
        body.append(f"        i = {n}\n        k{n}({', '.join(args)})")
    src = ("def run(env, dims, where):\n    i = 0\n    try:\n" + ("\n".join(body) or "        return")
           + "\n    except BaseException:\n        where.append(i)\n        raise\n")
    exec(compile(src, "<edgetorch program>", "exec"), ns)
    return ns["run"]


class Profile:
    def __init__(self, method, timings):
        # planned-view reshapes run no kernel and are not timed; #index is the instruction's number
        pos = {id(ins): i for i, ins in enumerate(method.info.instructions)}
        self.index = [pos[id(ins)] for ins, _, _ in timings]
        self.rows = [(label, ins.source, ins.line, t) for ins, t, label in timings]
        self.total = sum(t for _, t, _ in timings)

    def by_op(self):
        agg = {}
        for op, _, _, t in self.rows:
            n, s = agg.get(op, (0, 0.0))
            agg[op] = (n + 1, s + t)
        return dict(sorted(agg.items(), key=lambda kv: -kv[1][1]))

    def __str__(self):
        lines = [f"{'op':<30} {'calls':>5} {'total us':>10} {'share':>6}"]
        for op, (n, s) in self.by_op().items():
            lines.append(f"{op:<30} {n:>5} {s * 1e6:>10.1f} {100 * s / max(self.total, 1e-12):>5.1f}%")
        lines.append(f"{'total':<30} {len(self.rows):>5} {self.total * 1e6:>10.1f}")
        lines.append("")
        lines.append("slowest instructions:")
        for i, (op, src, line, t) in sorted(zip(self.index, self.rows), key=lambda r: -r[1][3])[:10]:
            where = f"{src}:{line}" if src else ""
            lines.append(f"  #{i:<4} {op:<28} {t * 1e6:>9.1f} us  {where}")
        return "\n".join(lines)


def _widen_scales(info):
    """Constants with float16 quantization scales, widened to float32 once here (Numba has no
    float16 arithmetic), except int4 group scales: the VNNI int4 kernel reads float16 as it is
    (fewer bytes streamed a token), and the other int4 paths widen theirs on first use."""
    arrays = list(info.arrays)
    for m in info.methods:
        for v in m.values:
            if v.quant and v.quant.get("bits") != 4 and 0 <= v.quant.get("scale", -1) < len(arrays):
                i = v.quant["scale"]
                if arrays[i].dtype == np.float16:
                    arrays[i] = arrays[i].astype(np.float32)
    return arrays


class Program:
    """A loaded, verified program. `prog(*arrays)` runs "forward"; `prog.method(name)` any method."""

    def __init__(self, info, memory_budget=DEFAULT_BUDGET):
        verify(info, memory_budget)
        self._info = info
        self._arrays = _widen_scales(info)
        self.metadata = dict(info.metadata)
        self.state = {}
        self.reset_state()
        self._methods = {m.name: Method(self, m) for m in info.methods}
        self._default = self._methods["forward" if "forward" in self._methods else info.methods[0].name] \
            if self._methods else None

    @property
    def methods(self):
        return list(self._methods)

    def method(self, name) -> Method:
        try:
            return self._methods[name]
        except KeyError:
            raise InputError(f"program has no method {name!r}; methods: {self.methods}") from None

    def reset_state(self):
        for s in self._info.states:
            init = self._arrays[s.init] if s.init >= 0 else None
            arr = np.array(init, copy=True) if init is not None else np.zeros(s.shape, np_dtype(s.dtype))
            if s.name in self.state:
                np.copyto(self.state[s.name], arr)
            else:
                self.state[s.name] = arr

    def __call__(self, *args, **named):
        if self._default is None:
            raise InputError("program has no methods")
        return self._default(*args, **named)

    def __getattr__(self, name):
        if name.startswith("_") or name not in self.__dict__.get("_methods", {}):
            raise AttributeError(name)
        return self._methods[name]

    @property
    def constant_bytes(self):
        return self._info.constant_bytes()

    def arena_bytes(self):
        return {m.name: m.info.arena_size for m in self._methods.values()}

    def warmup(self):
        """Compile (or load from the cache) the kernels this program uses, by running each method once
        on inputs at the dims' lower bounds; state is restored afterwards."""
        saved = {k: v.copy() for k, v in self.state.items()}
        for m in self._methods.values():
            m(*random_inputs(m, "min"))
        for k, v in saved.items():
            np.copyto(self.state[k], v)

    def __repr__(self):
        return f"<edgetorch.runtime.Program methods={self.methods} constants={self.constant_bytes:,} B>"


def random_inputs(method, size="min", seed=0):
    """Inputs matching a method's specs (dims at min, max or mid); ints in [0, 2)."""
    rng = np.random.default_rng(seed)
    out = []
    for s in method.inputs:
        shape = []
        for d in s.shape:
            if isinstance(d, int):
                shape.append(d)
            else:
                lo, hi = s.ranges.get(d, (1, 1))
                shape.append(lo if size == "min" else hi if size == "max" else (lo + hi) // 2)
        dt = np_dtype(s.dtype)
        if dt.kind == "f":
            out.append(rng.standard_normal(shape).astype(dt))
        elif dt == np.bool_:
            out.append(np.ones(shape, dtype=bool))
        else:
            out.append(rng.integers(0, 2, size=shape).astype(dt))
    return out


def load(path_or_bytes, *, memory_budget=DEFAULT_BUDGET, verify_checksum=True) -> Program:
    """Load and verify a .etp program (memory-mapped file, or bytes).

    >>> prog = load("model.etp")
    >>> y = prog(x)                              # the "forward" method
    >>> logits = prog.method("decode")(ids, pos)
    """
    threads.choose_threading_layer()
    return Program(read(path_or_bytes, verify_checksum=verify_checksum), memory_budget=memory_budget)
