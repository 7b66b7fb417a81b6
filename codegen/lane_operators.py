"""Each lane's operators for its own step, as loop IR (:mod:`loop`): the adaptive drivers' values of
a scheme's φ-polynomials Σ w Π atoms(hL) (:class:`scheme.PhiOperator`), atoms φ_k(c hL)
(methods.md §1.2) and W-method resolvents (I − a hL)^{-1} (methods.md §4).

Zero, scalar and diagonal ``L``: per-lane vectors ``op_X[i]`` from the IR's scalar function
``phi(k, x)`` (``kernels.matfun.phi_scalar`` in every backend).  Dense ``L``: (D, D) blocks per lane
from the runtime's block algorithms (``kernels.matfun``: ``lane_matrices``, ``phi_block``,
``inverse_block``, ``scale_block``, ``axpy_block``), one matrix atom per term (a product of φ
matrices per lane is refused at ``solve``).  Fixed steps read host tables instead
(``kernels.arguments.operator_tables``: one value per step size, not per lane).

Exponential Rosenbrock methods' operators of the trajectory's own Jacobian (``jacobian_operators``):
after the backend evaluates J̃ into the block ``Jt`` (:class:`scheme.EvalJacobian`), every lane's
φ_k(c hJ̃) by ``phi_block`` (one scaling and squaring per scale c) and each operator's sum, in
fixed and adaptive steps alike.
"""
from __future__ import annotations

from ..abi import LINEAR_ARGS, LINEAR_LAYOUT, entry, view
from .loop import Buffer, Call, Lane, Lanes, Let, Operators, Set
from .scheme import Combine


def operator_atoms(scheme, dense: bool = False) -> list:
    """Distinct atoms ("phi", k, c) / ("res", a) of the scheme's operators, in first-use order."""
    atoms = []
    for name, op in scheme.all_operators().items():
        for _, at in op.poly:
            if dense and len(at) != 1:    # solve refuses it first, with a ModelError
                raise NotImplementedError(f"operator {name}: products of φ atoms with a dense L per lane")
            atoms += [a for a in at if a not in atoms]
    return atoms


def lane_operators(scheme, linear: str):
    """(lanes, buffers, setup, statements): what the adaptive driver declares, runs once per block
    (``setup``) and runs every attempt (``statements``, after the lanes' ``hs`` is known)."""
    ops = scheme.all_operators()
    if not ops:
        return [], [], [], []
    if linear == "operator":     # a field's structured operator: its values for the lane's step (field_runtime)
        return [], [], [], [Operators("hs")]
    if linear == "dense":
        return _dense(ops, operator_atoms(scheme, dense=True))
    L, S = LINEAR_ARGS
    lm = f"{L}[" + ", ".join(entry(LINEAR_LAYOUT["elementwise"], traj=f"src * {S}", i="i")) + "]"
    z = "0.0" if linear == "zero" else f"hs * {lm}"   # zero: every atom is a constant
    body = elementwise_operators(scheme, z, lambda name: f"op_{name}[i]")
    return [Lane(f"op_{name}", "state", rows="D") for name in ops], [], [], [Lanes(body, rows="D")]


def elementwise_operators(scheme, z: str, target) -> list:
    """The scheme's operators Σ w Π atoms(z) at one eigenvalue z = c·hλ (an elementwise L) as statements: ``z``,
    each distinct atom once (φ_k by the IR's ``phi(k, x)``, resolvents 1/(1 − a z)), then each operator into
    ``target(name)`` — the adaptive kernels' per-lane operators and the compiled field kernel's."""
    body, value = [Let("z", z)], {}
    for k, atom in enumerate(operator_atoms(scheme)):
        value[atom] = f"a{k}"
        if atom[0] == "phi":
            body.append(Let(f"a{k}", f"phi({atom[1]}, {float(atom[2])!r} * z)"))
        else:
            body.append(Let(f"a{k}", f"1.0 / (1.0 - {float(atom[1])!r} * z)"))
    for name, op in scheme.all_operators().items():
        terms = [" * ".join([repr(float(w)), *(value[a] for a in at)]) for w, at in op.poly]
        body.append(Let(target(name), " + ".join(terms) or "0.0"))
    return body


def _dense(ops, atoms):
    """Blocks: φ_k(c hL) for every k up to the highest used, one scaling and squaring per scale c
    (``phi_block``); each resolvent by Gauss–Jordan (``inverse_block``); then each operator's terms."""
    scales = {}
    for atom in atoms:
        if atom[0] == "phi":
            scales[atom[2]] = max(scales.get(atom[2], 0), atom[1])
    buffers = [Buffer(f"op_{name}", "(D, D, B)", "state") for name in ops]
    L, S = LINEAR_ARGS
    lm = view(L, LINEAR_LAYOUT["dense"], ("traj", "i", "j"))   # lane_matrices reads L[traj, i, j]
    setup, attempt, value = [], [], {}
    for s, (c, kmax) in enumerate(scales.items()):
        buffers += [Buffer(f"Zs{s}", "(D, D, B)"), Buffer(f"phs{s}", f"({kmax + 1}, D, D, B)")]
        setup.append(Call("matfun", "phi_block_work", ("D", str(kmax), "B", f"Zs{s}.dtype"), f"phw{s}"))
        attempt += [Call("matfun", "lane_matrices", (lm, S, "src", "hs", "0.0", repr(float(c)), f"Zs{s}")),
                    Call("matfun", "phi_block", (f"Zs{s}", str(kmax), f"phs{s}", f"phw{s}"))]
        value.update({atom: f"phs{s}[{atom[1]}]" for atom in atoms if atom[0] == "phi" and atom[2] == c})
    resolvents = [a for a in atoms if a[0] == "res"]
    if resolvents:
        buffers.append(Buffer("Rz", "(D, D, B)"))
        setup.append(Call("matfun", "inverse_block_work", ("D", "B", "Rz.dtype"), "rwork"))
    # an operator that is exactly one resolvent (W-methods' M = (I − γhL)^{-1}) is computed in place
    alias = {}
    for name, op in ops.items():
        if len(op.poly) == 1 and op.poly[0][0] == 1 and op.poly[0][1][0][0] == "res":
            alias.setdefault(op.poly[0][1][0], name)
    for r, atom in enumerate(resolvents):
        value[atom] = f"op_{alias[atom]}" if atom in alias else f"res{r}"
        if atom not in alias:
            buffers.append(Buffer(value[atom], "(D, D, B)"))
        attempt += [Call("matfun", "lane_matrices", (lm, S, "src", "hs", "1.0", repr(-float(atom[1])), "Rz")),
                    Call("matfun", "inverse_block", ("Rz", value[atom], "rwork"))]
    for name, op in ops.items():
        if len(op.poly) == 1 and alias.get(op.poly[0][1][0]) == name:
            continue
        for k, (w, (atom,)) in enumerate(op.poly):
            attempt.append(Call("matfun", "axpy_block" if k else "scale_block", (f"op_{name}", repr(float(w)), value[atom])))
        if not op.poly:  # pragma: no cover - the schemes' operators are never zero
            raise NotImplementedError(f"operator {name} is zero")
    return [], buffers, setup, attempt


def jacobian_operator_name(name: str) -> str:
    """The block (D+1, D+1, B) holding a Jacobian operator; J̃ itself is ``Jt``."""
    return "Jt" if name == "J" else f"jop_{name}"


def jacobian_operators(scheme, statements):
    """(buffers, setup, after): the blocks of the Jacobian operators that ``statements`` apply, their
    scratch (``setup``: once per block) and the calls that compute them from ``Jt`` (``after``: right
    after each :class:`scheme.EvalJacobian`).  Each operator is Σ w φ_k(c hJ̃), single atoms."""
    used = {t.op for s in statements if isinstance(s, Combine) for t in s.terms}
    ops = {k: op for k, op in scheme.jacobian_operators.items() if k in used and op.poly is not None}
    scales = {}
    for name, op in ops.items():
        for _, atoms in op.poly:
            if len(atoms) != 1 or atoms[0][0] != "phi":
                raise NotImplementedError(f"Jacobian operator {name}: only sums of single φ atoms per lane")
            scales[atoms[0][2]] = max(scales.get(atoms[0][2], 0), atoms[0][1])
    buffers = [Buffer("Jt", "(D + 1, D + 1, B)", "state")]
    setup, after, index = [], [], {}
    for s, (c, kmax) in enumerate(scales.items()):
        index[c] = s
        buffers += [Buffer(f"Jc{s}", "(D + 1, D + 1, B)", "state"),
                    Buffer(f"phj{s}", f"({kmax + 1}, D + 1, D + 1, B)", "state")]
        setup.append(Call("matfun", "phi_block_work", ("D + 1", str(kmax), "B", f"Jc{s}.dtype"), f"pwj{s}"))
        after += [Call("matfun", "scale_lanes", (f"Jc{s}", repr(float(c)), "h_l", "Jt")),
                  Call("matfun", "phi_block", (f"Jc{s}", str(kmax), f"phj{s}", f"pwj{s}"))]
    for name, op in ops.items():
        (w0, ((_, order0, c0),)), *rest = op.poly
        if not rest and w0 == 1:    # one φ_k(c hJ̃) itself: a view of phi_block's result, not a copy
            setup.append(Set(jacobian_operator_name(name), f"phj{index[c0]}[{order0}]"))
            continue
        buffers.append(Buffer(jacobian_operator_name(name), "(D + 1, D + 1, B)", "state"))
        for k, (w, ((_, order, c),)) in enumerate(op.poly):
            after.append(Call("matfun", "axpy_block" if k else "scale_block",
                              (jacobian_operator_name(name), repr(float(w)), f"phj{index[c]}[{order}]")))
    return buffers, setup, after
