"""Helpers for convergence studies (in the spirit of DiffEqDevTools.test_convergence)."""
from __future__ import annotations

import numpy as np


def observed_order(dts, errors) -> float:
    """Least-squares slope of log(error) against log(dt): the observed order (methods.md §7)."""
    dts, errors = np.asarray(dts, float), np.asarray(errors, float)
    if dts.shape != errors.shape or dts.size < 2:
        raise ValueError("observed_order needs >= 2 (dt, error) pairs of equal length")
    if np.any(errors <= 0) or not np.all(np.isfinite(errors)):
        raise ValueError(f"errors must be positive and finite, got {errors}")
    return float(np.polyfit(np.log(dts), np.log(errors), 1)[0])
