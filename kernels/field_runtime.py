"""A field model as the loop IR's lanes see it (``codegen.emit_field``): one lane, whose state vector is the
grid flattened, (D, 1).  The printed driver — the same fixed-step and adaptive loop IR every backend
prints — calls these for the model's part: N and L u on the grid, sums Σ coef · f(hL) v through the
structured operator (``operators.py``), and the operators' values for a step size, memoised per step-size
class so equal steps and repeated adaptive sizes pay once."""
from __future__ import annotations

import numpy as np

#: step sizes whose operator values are kept (fixed grids have one or two; adaptive steps rarely repeat one)
MEMO_SIZES = 8


def _scalar(x) -> float:
    """A lane value of the one lane (a number or an array of one entry) as a float."""
    if isinstance(x, (int, float)):
        return float(x)
    return float(x.flat[0]) if isinstance(x, np.ndarray) else float(np.ravel(x)[0])


class FieldLanes:
    """``N(u, t)`` on grids of ``shape`` and the linear operator ``op`` (``kernels.operators``), for the lane
    layout (D, 1); ``polys``: the scheme's operators, name -> φ-polynomial (``codegen.phi.phi_poly``)."""

    def __init__(self, shape, N, op, polys: dict, memo: dict | None = None):
        self.shape, self.N, self.op, self.polys = tuple(shape), N, op, dict(polys)
        self.memo = {} if memo is None else memo      # step-size class -> operator values (kept across solves)
        self.transforms = {}                          # the operator's transforms of this step's registers

    def grid(self, v):
        return np.asarray(v).reshape(self.shape)

    def lane(self, g):
        return np.asarray(g, dtype=float).reshape(-1, 1)

    def forcing(self, U, t):
        """N(U, t): the part the exponential methods treat explicitly."""
        return self.lane(self.N(self.grid(U), _scalar(t)))

    def full(self, U, t):
        """f = L U + N(U, t)."""
        g = self.grid(U)
        return self.lane(self.N(g, _scalar(t)) + self.op.apply(g))

    def combine(self, terms):
        """Σ coef · value v over ``terms`` = [(coef, operator value or None, v)] (coef a lane value)."""
        return self.lane(self.op.combine([(_scalar(c), value, self._view(v)) for c, value, v in terms], self.transforms))

    def _view(self, v):
        """The grid view of lane array ``v``, one per array and step: the operator keeps its transforms by
        the view's id, so a register used by several sums is transformed once."""
        views = self.transforms.setdefault("lane_views", {})
        if id(v) not in views:
            views[id(v)] = v, self.grid(v)             # v kept: its id stays its own this step
        return views[id(v)][1]

    def values(self, h) -> dict:
        """{name: value of the scheme's operator at step size h} (h a lane value); starts a new step."""
        h = _scalar(h)
        self.transforms = {}
        key = float(f"{h:.12g}")      # a grid's equal steps differ in their last bits: one class
        if key in self.memo:
            self.memo[key] = self.memo.pop(key)          # most recent last
        else:
            cache = {}
            self.memo[key] = {name: self.op.values(poly, h, cache) for name, poly in self.polys.items()}
            while len(self.memo) > MEMO_SIZES:            # adaptive steps: every size new; keep the latest only
                self.memo.pop(next(iter(self.memo)))
        return self.memo[key]
