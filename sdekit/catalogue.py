"""``sdekit.methods()``: the method catalogue as a table."""
from __future__ import annotations

from sdekit.codegen.methods import CATALOGUE


def methods() -> list:
    """One dict per method: name, aliases, family, orders, adaptivity, noise support, reference."""
    rows = []
    for m in CATALOGUE:
        rows.append({
            "name": m.name,
            "aliases": list(m.aliases),
            "family": {"rk": "explicit RK", "exprk": "exponential RK"}[m.family] + (" (SDE)" if m.stochastic else ""),
            "order": m.order,
            "stiff_order": m.stiff_order,
            "strong_order": m.strong_order,
            "weak_order": m.weak_order,
            "adaptive": m.adaptive,
            "noise": ("additive scalar/diagonal" if m.requires_additive else "scalar/diagonal/general")
            if m.stochastic else "-",
            "reference": m.reference,
        })
    return rows


def methods_table() -> str:
    """The catalogue as a markdown table (README, ``sdekit methods``)."""
    cols = ["name", "aliases", "family", "order", "stiff_order", "strong_order", "weak_order", "adaptive", "noise"]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for r in methods():
        cells = [", ".join(r[c]) or "-" if c == "aliases" else "-" if r[c] is None else str(r[c]) for c in cols]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
