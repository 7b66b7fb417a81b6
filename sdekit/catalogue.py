"""``sdekit.methods()``: the method catalogue and the diffusion samplers, as rows and as tables."""
from __future__ import annotations

from sdekit.codegen.methods import CATALOGUE


NOISE = {"increment": "scalar/diagonal/general", "milstein": "scalar/diagonal (commutative)",
         "convolution": "additive scalar/diagonal", "sra": "additive scalar/diagonal/general"}


def methods(samplers: bool = True) -> list:
    """One dict per method: name, aliases, family, deterministic/strong/weak order, stiff order (the order kept
    however stiff L is, where analysed: None otherwise), embedded estimator order, adaptivity, noise support,
    reference; then (``samplers``) the diffusion samplers' rows (:func:`sampler_rows`, family "diffusion sampler")."""
    rows = []
    for m in CATALOGUE:
        lawson = getattr(m.tableau, "kind", "") == "lawson"
        rows.append({
            "name": m.name,
            "aliases": list(m.aliases),
            "family": ("Lawson (integrating factor)" if lawson else m.family.title)
            + (" (SDE)" if m.stochastic and m.family.name != "sra" else ""),
            "order": m.order,
            "stiff_order": m.stiff_order,       # kept uniformly in ‖hL‖ where analysed; None: not analysed
            "strong_order": m.strong_order,
            "weak_order": m.weak_order,
            "embedded": m.embedded_order,
            "adaptive": m.adaptive,
            "noise": NOISE[m.noise] if m.stochastic else "-",
            "reference": m.reference,
        })
    return rows + (sampler_rows() if samplers else [])


def sampler_rows() -> list:
    """One dict per diffusion sampler (``sk.diffusion.SAMPLERS``, solved on the models of ``sk.diffusion``): the name
    ``solve`` takes ("edm-euler" for the sampler "euler": "Euler" is the catalogue's), its other names, the prediction
    it integrates, order (of the ODE samplers), network calls per step, multistep, and whether it samples the
    reverse SDE."""
    from sdekit.diffusion_models import sampler_name
    from sdekit.sampling import ALIASES, MULTISTEP, SAMPLERS, STOCHASTIC
    rows = []
    for name, (prediction, order, calls) in SAMPLERS.items():
        names = [n for n in [name, *(a for a, m in ALIASES.items() if m == name)] if sampler_name(n) == name]
        rows.append({"name": names[0], "aliases": names[1:], "family": "diffusion sampler",
                     "order": None if name in STOCHASTIC else order,   # (SAMPLERS holds no order for the SDE samplers)
                     "stiff_order": None, "strong_order": None, "weak_order": None, "embedded": None,
                     "adaptive": False, "noise": "reverse SDE" if name in STOCHASTIC else "-", "reference": None,
                     "prediction": prediction, "network_calls": calls,
                     "multistep": name in MULTISTEP or name in STOCHASTIC[1:]})       # SDE 2M, 3M
    return rows


def _markdown(rows, cols) -> list:
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for r in rows:
        cells = [", ".join(r[c]) or "-" if c == "aliases" else "-" if r[c] is None else str(r[c]) for c in cols]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def methods_table() -> str:
    """The catalogue and the diffusion samplers as markdown tables (README, ``sdekit methods``)."""
    catalogue = _markdown(methods(samplers=False), ["name", "aliases", "family", "order", "stiff_order",
                                                    "strong_order", "weak_order", "embedded", "adaptive", "noise"])
    samplers = _markdown(sampler_rows(), ["name", "aliases", "prediction", "order", "network_calls", "multistep",
                                          "noise"])
    heading = ("Diffusion samplers (`sk.diffusion.SAMPLERS`, on the models of `sk.diffusion`; names as `solve`, "
               "`sk.diffusion.sample` and `invert` take them, case-insensitive; `sample` and `invert` also take "
               "`euler`, `heun`; DPM-Solver++(3M), DEIS-3 and UniPC-3 reach their order with `warmup=\"singlestep\"`, "
               "one lower with diffusers' warm-up, the default, where the first step matters):")
    return "\n".join(catalogue + ["", heading, ""] + samplers)
