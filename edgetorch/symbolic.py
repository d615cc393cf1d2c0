"""Symbolic dims (used by shape rules, so they live in the frontend): `Dim` declares a dynamic dimension; `SymInt` carries an
expression over the declared dims through shape arithmetic during capture.

A SymInt is an int (its value at the example inputs, so Python code and
numpy keep working) plus an expression tree, so `x.shape[1] * 4` recorded in
a reshape stays an expression over `seq` in the program.  Expressions are
tuples: ("sym", i), ("const", v), (op, a, b) with op in add, sub, mul,
floordiv, mod, max, min.
"""
from __future__ import annotations

import operator

from ._errors import ExportError

_OPS = {"add": operator.add, "sub": operator.sub, "mul": operator.mul, "floordiv": operator.floordiv,
        "mod": operator.mod, "max": max, "min": min}
OP_CODES = {"const": 0, "sym": 1, "add": 2, "sub": 3, "mul": 4, "floordiv": 5, "mod": 6, "max": 7, "min": 8}
CODE_OPS = {v: k for k, v in OP_CODES.items()}


class Dim:
    """A dynamic dimension: Dim("seq", min=1, max=2048).

    The example input's size for this dim must lie in [min, max] and should
    not be 0 or 1 (those values would be indistinguishable from broadcasting).
    """

    def __init__(self, name, *, min=1, max=2 ** 31 - 1):  # noqa: A002
        if not name.isidentifier():
            raise ExportError(f"Dim name {name!r} must be an identifier")
        if not (0 <= min <= max):
            raise ExportError(f"Dim {name!r}: need 0 <= min <= max, got min={min}, max={max}")
        self.name, self.min, self.max = name, int(min), int(max)

    def __repr__(self):
        return f"Dim({self.name!r}, min={self.min}, max={self.max})"


def _expr(v):
    if isinstance(v, SymInt):
        return v.expr
    return ("const", int(v))


def _offset(e):
    """(base, c) when e is base + c with a constant c, else (e, 0)."""
    if e[0] == "add" and e[2][0] == "const":
        return e[1], e[2][1]
    if e[0] == "sub" and e[2][0] == "const":
        return e[1], -e[2][1]
    return e, 0


def _simplify(op, a, b):
    if a[0] == "const" and b[0] == "const":
        return ("const", _OPS[op](a[1], b[1]))
    if op in ("add", "sub") and b[0] == "const" and a[0] != "const":
        base, c = _offset(a)
        c = c + b[1] if op == "add" else c - b[1]
        if c == 0:
            return base
        return ("add", base, ("const", c)) if c > 0 else ("sub", base, ("const", -c))
    if op == "add" and b == ("const", 0):
        return a
    if op == "add" and a == ("const", 0):
        return b
    if op in ("mul", "floordiv") and b == ("const", 1):
        return a
    if op == "mul" and a == ("const", 1):
        return b
    if op == "sub" and b == ("const", 0):
        return a
    return (op, a, b)


class SymInt(int):
    """An int with a symbolic expression over a method's dims."""

    def __new__(cls, value, expr):
        o = int.__new__(cls, value)
        o.expr = expr
        return o

    def _bin(self, other, op, swap=False):
        if not isinstance(other, int):
            return NotImplemented
        a, b = (other, self) if swap else (self, other)
        value = _OPS[op](int(a), int(b))
        e = _simplify(op, _expr(a), _expr(b))
        return value if e[0] == "const" else SymInt(value, e)

    def __add__(self, o): return self._bin(o, "add")
    def __radd__(self, o): return self._bin(o, "add", True)
    def __sub__(self, o): return self._bin(o, "sub")
    def __rsub__(self, o): return self._bin(o, "sub", True)
    def __mul__(self, o): return self._bin(o, "mul")
    def __rmul__(self, o): return self._bin(o, "mul", True)
    def __floordiv__(self, o): return self._bin(o, "floordiv")
    def __rfloordiv__(self, o): return self._bin(o, "floordiv", True)
    def __mod__(self, o): return self._bin(o, "mod")
    def __rmod__(self, o): return self._bin(o, "mod", True)

    def __neg__(self):
        return self._bin(-1, "mul")

    def __index__(self):
        return int(self)

    def __reduce__(self):          # copy, deepcopy and pickle keep the expression
        return (SymInt, (int(self), self.expr))

    def __repr__(self):
        return f"{show(self.expr)}(={int(self)})"

    __hash__ = int.__hash__


def sym_max(a, b):
    if not isinstance(a, SymInt) and not isinstance(b, SymInt):
        return max(a, b)
    return SymInt(max(int(a), int(b)), _simplify("max", _expr(a), _expr(b)))


def sym_min(a, b):
    if not isinstance(a, SymInt) and not isinstance(b, SymInt):
        return min(a, b)
    return SymInt(min(int(a), int(b)), _simplify("min", _expr(a), _expr(b)))


def evaluate(expr, dims):
    """Value of an expression given the dims' values (a sequence indexed by symbol)."""
    k = expr[0]
    if k == "const":
        return expr[1]
    if k == "sym":
        return dims[expr[1]]
    return _OPS[k](evaluate(expr[1], dims), evaluate(expr[2], dims))


def dim_value(d, dims):
    return evaluate(d.expr, dims) if isinstance(d, SymInt) else int(d)


def symbols(expr, out=None):
    out = set() if out is None else out
    if expr[0] == "sym":
        out.add(expr[1])
    elif expr[0] not in ("const",):
        symbols(expr[1], out)
        symbols(expr[2], out)
    return out


def show(expr, names=None):
    k = expr[0]
    if k == "const":
        return str(expr[1])
    if k == "sym":
        return names[expr[1]] if names else f"s{expr[1]}"
    sym = {"add": "+", "sub": "-", "mul": "*", "floordiv": "//", "mod": "%"}.get(k)
    if sym:
        return f"({show(expr[1], names)}{sym}{show(expr[2], names)})"
    return f"{k}({show(expr[1], names)}, {show(expr[2], names)})"


def show_dim(d, names=None):
    return show(d.expr, names) if isinstance(d, SymInt) else str(int(d))


def to_postfix(expr):
    """(codes, args) for the program: const/sym push, binary ops pop two."""
    codes, args = [], []

    def walk(e):
        if e[0] == "const":
            codes.append(OP_CODES["const"])
            args.append(e[1])
        elif e[0] == "sym":
            codes.append(OP_CODES["sym"])
            args.append(e[1])
        else:
            walk(e[1])
            walk(e[2])
            codes.append(OP_CODES[e[0]])
            args.append(0)
    walk(expr)
    return codes, args


def from_postfix(codes, args):
    stack = []
    for c, a in zip(codes, args):
        op = CODE_OPS[c]
        if op in ("const", "sym"):
            stack.append((op, int(a)))
        else:
            b, x = stack.pop(), stack.pop()
            stack.append((op, x, b))
    if len(stack) != 1:
        raise ValueError("malformed dim expression")
    return stack[0]


def bounds(expr, ranges):
    """(lo, hi) of an expression over dims with [min, max] ranges, checked at the corners.

    Shape expressions are monotone in each dim in practice (sums, products,
    floor divisions by constants), so the corners bound them.
    """
    syms = sorted(symbols(expr))
    vals = []
    for mask in range(1 << len(syms)):
        dims = {}
        for k, s in enumerate(syms):
            dims[s] = ranges[s][1] if mask >> k & 1 else ranges[s][0]
        vals.append(evaluate(expr, dims))
    return min(vals), max(vals)
