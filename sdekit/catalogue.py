"""``sdekit.methods()``: the method catalogue as a table."""
from __future__ import annotations

from sdekit.codegen.methods import CATALOGUE


NOISE = {"increment": "scalar/diagonal/general", "milstein": "scalar/diagonal (commutative)",
         "convolution": "additive scalar/diagonal", "sra": "additive scalar/diagonal/general"}


def methods() -> list:
    """One dict per method: name, aliases, family, deterministic/strong/weak order, stiff order
    where it differs, embedded estimator order, adaptivity, noise support, reference."""
    rows = []
    for m in CATALOGUE:
        lawson = getattr(m.tableau, "kind", "") == "lawson"
        rows.append({
            "name": m.name,
            "aliases": list(m.aliases),
            "family": ("Lawson (integrating factor)" if lawson else m.family.title)
            + (" (SDE)" if m.stochastic and m.family.name != "sra" else ""),
            "order": m.order,
            "stiff_order": m.stiff_order if m.stiff_order != m.order else None,
            "strong_order": m.strong_order,
            "weak_order": m.weak_order,
            "embedded": m.embedded_order,
            "adaptive": m.adaptive,
            "noise": NOISE[m.noise] if m.stochastic else "-",
            "reference": m.reference,
        })
    return rows


def methods_table() -> str:
    """The catalogue as a markdown table (README, ``sdekit methods``)."""
    cols = ["name", "aliases", "family", "order", "stiff_order", "strong_order", "weak_order", "embedded", "adaptive",
            "noise"]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for r in methods():
        cells = [", ".join(r[c]) or "-" if c == "aliases" else "-" if r[c] is None else str(r[c]) for c in cols]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
