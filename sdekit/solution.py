"""The result of ``solve``."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from sdekit.abi import RETCODES, SUCCESS


@dataclass
class Solution:
    """``t`` (nsave,); ``y`` (n, nsave, d) for an Ensemble, (nsave, d) for one problem.

    ``retcode`` is "Success" unless some trajectory failed (then the worst code);
    ``retcodes`` holds one code per trajectory (ensembles); ``stats`` ensemble totals;
    ``trajectory_stats`` the same counts per trajectory (ensembles: {"nf", "naccept", "nreject"} → (n,) int64
    arrays, as DifferentialEquations.jl's ``sim[i].stats``; a stored solve reads them from its store, where one begun
    before they were kept has None; None for one problem and a diffusion sampler, whose counts are the same for
    every trajectory).
    """

    t: np.ndarray
    y: np.ndarray
    retcode: str
    retcodes: np.ndarray | None
    stats: dict = field(default_factory=dict)
    method: str = ""
    backend: str = ""
    trajectory_stats: dict | None = None

    @classmethod
    def from_codes(cls, t, y, codes, ensemble: bool, **kw):
        names = np.array(RETCODES, dtype=object)[codes]
        worst = RETCODES[int(codes.max())] if codes.size else RETCODES[SUCCESS]
        return cls(t=t, y=y, retcode=worst, retcodes=names if ensemble else None, **kw)

    @property
    def success(self) -> bool:
        return self.retcode == RETCODES[SUCCESS]

    def __repr__(self):
        return (f"Solution(method={self.method!r}, backend={self.backend!r}, retcode={self.retcode!r}, "
                f"t: {self.t.shape}, y: {self.y.shape}, stats={self.stats})")

    def plot(self, kind: str = "auto", component: int = 0, ax=None, paths: int = 20, quantiles=(0.05, 0.25),
             bins: int = 40):
        """Draw the solution with matplotlib (imported here) and return the axes.

        ``kind``: "paths" (up to ``paths`` trajectories of ``component`` against t), "quantiles" (the
        ensemble's median and the bands between each q and 1 − q of ``quantiles``, over the trajectories
        that succeeded), "hist" (the distribution of ``component`` at the last saved time), or "auto":
        paths for one problem, quantiles for an ensemble saved at more than two times, else hist."""
        import matplotlib.pyplot as plt
        ens = self.y.ndim == 3
        d = self.y.shape[-1]
        if not 0 <= component < d:
            raise ValueError(f"component must be in [0, {d}), got {component}")
        if kind == "auto":
            kind = "paths" if not ens else ("quantiles" if self.t.size > 2 else "hist")
        if kind not in ("paths", "quantiles", "hist"):
            raise ValueError(f"kind must be 'paths', 'quantiles', 'hist' or 'auto', got {kind!r}")
        if ax is None:
            _, ax = plt.subplots(figsize=(7, 4))
        Y = self.y[..., component] if ens else self.y[None, :, component]          # (n, nsave)
        ok = Y[np.all(np.isfinite(Y), axis=1)]
        if kind != "paths" and len(ok) == 0:
            codes = dict(zip(*np.unique(np.asarray(self.retcodes if ens else [self.retcode]), return_counts=True)))
            raise ValueError(f"no trajectory stayed finite ({', '.join(f'{c}: {k}' for c, k in codes.items())}), so "
                             f"there is no {'band' if kind == 'quantiles' else 'distribution'} to draw; "
                             "sol.plot('paths') shows them up to where they failed")
        label = f"y{component}"
        if kind == "paths":
            for row in Y[:paths]:
                ax.plot(self.t, row, lw=1)
            ax.set(xlabel="t", ylabel=label, title=f"{self.method}: {min(paths, len(Y))} of {len(Y)} paths")
        elif kind == "quantiles":
            if not ens:
                raise ValueError("quantile bands need an ensemble solution")
            for q in sorted(quantiles):
                lo, hi = np.quantile(ok, [q, 1 - q], axis=0)
                ax.fill_between(self.t, lo, hi, alpha=0.25, color="C0", label=f"{q:g}–{1 - q:g}")
            ax.plot(self.t, np.median(ok, axis=0), color="C0", label="median")
            ax.set(xlabel="t", ylabel=label, title=f"{self.method}: {len(ok)} trajectories")
            ax.legend()
        else:
            ax.hist(ok[:, -1], bins=bins, density=True, alpha=0.7)
            ax.set(xlabel=f"{label}(t = {self.t[-1]:g})", ylabel="density",
                   title=f"{self.method}: distribution at t = {self.t[-1]:g}")
        return ax
