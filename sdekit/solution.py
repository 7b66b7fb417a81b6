"""The result of ``solve``."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from sdekit.abi import RETCODES


@dataclass
class Solution:
    """``t`` (nsave,); ``y`` (n, nsave, d) for an Ensemble, (nsave, d) for one problem.

    ``retcode`` is "Success" unless some trajectory failed (then the worst code);
    ``retcodes`` holds one code per trajectory (ensembles); ``stats`` ensemble totals.
    """

    t: np.ndarray
    y: np.ndarray
    retcode: str
    retcodes: np.ndarray | None
    stats: dict = field(default_factory=dict)
    method: str = ""
    backend: str = ""

    @classmethod
    def from_codes(cls, t, y, codes, ensemble: bool, **kw):
        names = np.array(RETCODES, dtype=object)[codes]
        worst = RETCODES[int(codes.max())] if codes.size else "Success"
        return cls(t=t, y=y, retcode=worst, retcodes=names if ensemble else None, **kw)

    @property
    def success(self) -> bool:
        return self.retcode == "Success"

    def __repr__(self):
        return (f"Solution(method={self.method!r}, backend={self.backend!r}, retcode={self.retcode!r}, "
                f"t: {self.t.shape}, y: {self.y.shape}, stats={self.stats})")
