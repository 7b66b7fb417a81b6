"""A sampler's run traced once and replayed: the step program of ``sdekit.sampling.sample``.

Every sampler's step is a linear combination of x and network outputs (and noise) whose coefficients depend only
on the schedule and the grid, so running the recipe once on placeholder arrays (:class:`Token`) records its whole
run as a program of three operations — call network k at token i and time t, draw step i's noise, combine tokens
with these coefficients (``sampling.Lazy`` collapses each step's arithmetic into one combination) — and replaying
it on real arrays does only those: a network call, and per step one combination (one fused pass on large arrays,
a scale-and-add chain on small ones).  The recipe's Python (coefficients, φ-functions, Lazy bookkeeping) runs once
per (schedule, sampler, grid, options), not once per step.  A recipe that does anything but such arithmetic with
an array (dynamic thresholding's quantile) is not traced (:class:`Untraceable`) and runs as it is.
"""
from __future__ import annotations

import numpy as np

#: programs kept, most recent last
CACHE_SIZE = 64
_programs: dict = {}


class Untraceable(Exception):
    """An operation on a placeholder that is not a linear combination with number coefficients."""


class Token:
    """A placeholder array of a traced run: numbers scale it, and sums with tokens or Lazy combinations stay Lazy."""

    __array_priority__ = 1000
    __array_ufunc__ = None

    def __init__(self, program, index: int):
        self.program, self.index = program, index

    def _lazy(self):
        from sdekit.sampling import Lazy
        return Lazy.of(self)

    def __add__(self, y):
        return self._lazy() + y

    __radd__ = __add__

    def __sub__(self, y):
        return self._lazy() - y

    def __rsub__(self, y):
        return y - self._lazy() if not isinstance(y, (int, float, np.number)) else self._untraceable()

    def __mul__(self, y):
        if isinstance(y, Token):
            self._untraceable()
        return self._lazy() * y

    __rmul__ = __mul__

    def __truediv__(self, y):
        return self._lazy() / y

    def __neg__(self):
        return -self._lazy()

    def _untraceable(self, *args, **kwargs):
        raise Untraceable("a sampler step did more than combine arrays linearly")

    def __getattr__(self, name):                 # .reshape, .shape, .abs, ...: not a linear combination
        raise Untraceable(f"a sampler step read {name!r} of an array")


class Program:
    """The recorded run: ``ops`` of ("net", k, token, t, out), ("noise", i, out), ("combine", coefs, tokens, out);
    token 0 is x, ``output`` the result's token; ``calls`` the network calls the run counts (guided pairs once)."""

    def __init__(self):
        self.ops, self.size, self.output, self.calls = [], 1, None, 0

    def token(self) -> Token:
        self.size += 1
        return Token(self, self.size - 1)

    def net(self, k: int, x, t) -> Token:
        out = self.token()
        self.ops.append(("net", k, _index(x), float(t), out.index))
        return out

    def noise(self, i: int) -> Token:
        out = self.token()
        self.ops.append(("noise", int(i), out.index))
        return out

    def combine(self, coefs, tokens) -> Token:
        out = self.token()
        self.ops.append(("combine", tuple(float(c) for c in coefs), tuple(_index(a) for a in tokens), out.index))
        return out

    def finish(self, result, calls: int):
        self.output, self.calls = _index(result), calls
        last = {}                                 # each token's last reading op: freed after it (large latents)
        for n, op in enumerate(self.ops):
            for i in ((op[2],) if op[0] == "net" else op[2] if op[0] == "combine" else ()):
                last[i] = n
        self.release = [[] for _ in self.ops]
        for i, n in last.items():
            if i != self.output:
                self.release[n].append(i)

    def replay(self, fns, x, noise):
        """Run the program on ``x`` with the networks ``fns`` (fn, uncond) and ``noise`` (a callable of the step)."""
        from sdekit.sampling import combine
        arrays = [None] * self.size
        arrays[0] = x
        for op, free in zip(self.ops, self.release):
            if op[0] == "net":
                arrays[op[4]] = fns[op[1]](arrays[op[2]], op[3])
            elif op[0] == "noise":
                arrays[op[2]] = noise(op[1])
            else:
                arrays[op[3]] = combine(op[1], [arrays[i] for i in op[2]])
            for i in free:
                arrays[i] = None
        return arrays[self.output]


def _index(a) -> int:
    from sdekit.sampling import Lazy
    if isinstance(a, Lazy):
        a = a.value()
    if not isinstance(a, Token):
        raise Untraceable(f"a sampler step combined an array that is not the run's ({type(a).__name__})")
    return a.index


def program(key, record):
    """The program of ``key`` (a hashable description of the run), recorded by ``record(program)`` the first time;
    None when the recipe is not traceable (remembered)."""
    if key in _programs:
        _programs[key] = _programs.pop(key)       # most recently used last
        return _programs[key]
    prog = Program()
    try:
        record(prog)
    except Untraceable:
        prog = None
    _programs[key] = prog
    while len(_programs) > CACHE_SIZE:
        _programs.pop(next(iter(_programs)))
    return prog
