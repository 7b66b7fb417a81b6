"""Everything a worker needs pickles (issue 18 item 1): networks, models, problems and ensembles
round-trip to equal objects, and a fresh process solves the unpickled ensemble to the same bits,
loading the kernel from its on-disk cache instead of compiling it."""
import os
import pickle
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import sdekit as sk
from sdekit.demo import demo_problem


def _ode_with_net():
    y = sk.states("y", 2)
    net = sk.MLP("g", [3, 5, 2], activation="silu")
    model = sk.ODE(y, linear=np.array([[-1.0, 0.5], [0.0, -2.0]]), nonlinear=net(y, sk.t))
    w = [(np.full((5, 3), 0.1), np.zeros(5)), (np.eye(2, 5), np.ones(2))]
    return sk.ODEProblem(model, y0=[0.5, -0.5], tspan=(0.0, 1.0), nets={"g": w})


@pytest.mark.parametrize("make", [lambda: demo_problem(32), lambda: sk.Ensemble(_ode_with_net(), n=7, seed=3),
                                  lambda: demo_problem(40).chunk(5, 17)], ids=["neural-sde", "dense-ode", "chunk"])
def test_ensembles_round_trip_to_equal_objects(make):
    ens = make()
    back = pickle.loads(pickle.dumps(ens))
    assert back == ens and back.problem == ens.problem and back.problem.model == ens.problem.model
    assert back.problem.model.form.nonlinear == ens.problem.model.form.nonlinear     # the network terms too
    assert pickle.loads(pickle.dumps(ens.problem.model.time_reversed())) == ens.problem.model.time_reversed()


def test_equality_sees_every_difference():
    ens = demo_problem(16)
    prob = ens.problem
    other_w = [(W + 1e-12, b) for W, b in prob.nets["f"]]
    assert sk.SDEProblem(prob.model, y0=prob.y0, tspan=prob.tspan, params=prob.params, nets={"f": other_w}) != prob
    assert sk.SDEProblem(prob.model, y0=prob.y0, tspan=(0.0, 2.0), params=prob.params, nets=prob.nets) != prob
    assert sk.SDEProblem(prob.model, y0=prob.y0, tspan=prob.tspan, params={"k": 2.0}, nets=prob.nets) != prob
    assert sk.Ensemble(prob, n=16, seed=1) != ens and sk.Ensemble(prob, n=16, seed=0) == ens
    y = sk.states("y", 4)
    assert sk.ODE(y, -y) != sk.ODE(y, -2 * y) and sk.ODE(y, -y) == sk.ODE(y, -y)
    assert sk.MLP("f", [4, 8, 4]) == sk.MLP("f", [4, 8, 4]) != sk.MLP("f", [4, 8, 4], activation="relu")


def test_a_broadcast_initial_value_is_not_pickled_n_times():
    small, big = demo_problem(10), demo_problem(100_000)
    assert len(pickle.dumps(big)) < len(pickle.dumps(small)) + 1000
    assert pickle.loads(pickle.dumps(big)).y0.shape == (100_000, 4)


def test_a_fresh_process_solves_the_unpickled_ensemble_to_the_same_bits_from_the_disk_cache(tmp_path):
    ens = demo_problem(300)
    here = sk.solve(ens, "SRA1", rtol=1e-2, atol=1e-2, saveat=[0.0, 0.5, 1.0])
    (tmp_path / "ens.pkl").write_bytes(pickle.dumps(ens))
    worker = textwrap.dedent(f"""
        import pickle, sys, numpy as np
        import sdekit as sk
        from sdekit.solve import plan
        ens = pickle.loads(open({str(tmp_path / 'ens.pkl')!r}, 'rb').read())
        p = plan(ens, "SRA1", rtol=1e-2, atol=1e-2, saveat=[0.0, 0.5, 1.0])
        sol = sk.solve(ens, "SRA1", rtol=1e-2, atol=1e-2, saveat=[0.0, 0.5, 1.0])
        np.save({str(tmp_path / 'y.npy')!r}, sol.y)
        stats = p.kernel.module.kernel.stats
        print(len(stats.cache_hits), len(stats.cache_misses))
    """)
    done = subprocess.run([sys.executable, "-c", worker], capture_output=True, text=True, env=dict(os.environ), timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    hits, misses = (int(x) for x in done.stdout.split())
    assert hits >= 1 and misses == 0, done.stdout        # loaded from the on-disk cache, not compiled again
    np.testing.assert_array_equal(np.load(tmp_path / "y.npy"), here.y)


def _field_problems():
    """A real field with data, params and a Laplacian; two species with a Fourier derivative inside N; a complex
    field (NLS): every kind of operator, as a pickled model must carry them."""
    import sympy as sp
    n = 32
    grid = np.linspace(0.0, 1.0, n)
    u, v, z = sk.field("u", n), sk.field("v", n), sk.field("z", n, complex=True)
    a, X = sk.params("a"), sp.Symbol("X")
    dx = sk.fourier(n, 2 * np.pi, lambda k: 1j * k)
    reaction = sk.FieldODE(u, linear=0.01 * sk.laplacian(n, 2.0 / (n + 1)), nonlinear=a * (u - u**3) + X, data={X: grid})
    burgers = sk.FieldODE([u, v], linear=[sk.fourier(n, 2 * np.pi, lambda k: -k**2), None],
                          nonlinear=[-u * dx(u) + v, -v])
    nls = sk.FieldODE(z, linear=sk.fourier(n, 2 * np.pi, lambda k: -1j * k**2), nonlinear=1j * z * sp.conjugate(z) * z)
    wave = np.sin(np.linspace(0.0, 2 * np.pi, n, endpoint=False))
    return [sk.FieldProblem(reaction, np.sin(np.pi * grid), (0.0, 1.0), params={"a": 1.0}),
            sk.FieldProblem(burgers, np.stack([wave, wave]), (0.0, 0.5)),
            sk.FieldProblem(nls, np.exp(1j * np.linspace(0.0, 2 * np.pi, n, endpoint=False)), (0.0, 0.2))]


def test_field_problems_pickle_and_a_fresh_process_solves_them_alike(tmp_path):
    """Field models and problems pickle as their constructors' arguments; an operator's name is its content's
    digest, so the unpickled expressions find their operators in another process (with a per-process counter an
    ``op3`` there could be another operator).  Same process, and for the complex field a fresh one that compiles its
    kernel (cold caches) and one after it that loads it give the same states, bit for bit (the kernel's ``forcing``
    is inlined: the loaded kernel ran another compiled copy of it, 1e-15 off)."""
    probs = _field_problems()
    here = [sk.solve(p, "ETDRK4", dt=0.01).y for p in probs]
    again = pickle.loads(pickle.dumps(probs))
    for p, q, y in zip(probs, again, here):
        assert [op.name for op in q.model.operators.values()] == [op.name for op in p.model.operators.values()]
        np.testing.assert_array_equal(sk.solve(q, "ETDRK4", dt=0.01).y, y)
    (tmp_path / "nls.pkl").write_bytes(pickle.dumps(probs[2]))      # the complex field: where the bits differed
    caches = {"SDEKIT_CACHE_DIR": str(tmp_path / "sdekit-cache")}   # the kernel's own caches cold (the runtime's: the run's)
    users = {k: v for k, v in os.environ.items() if k != "NUMBA_OPT"}   # LLVM at the users' -O3 (the suite's -O1
    # formed the same FMAs in both copies); across opt levels agreement is to rounding, not bitwise
    for run in ("cold", "warm"):
        worker = textwrap.dedent(f"""
            import pickle, numpy as np
            import sdekit as sk
            prob = pickle.loads(open({str(tmp_path / 'nls.pkl')!r}, 'rb').read())
            np.save({str(tmp_path / f'{run}.npy')!r}, sk.solve(prob, "ETDRK4", dt=0.01).y)
        """)
        done = subprocess.run([sys.executable, "-c", worker], capture_output=True, text=True,
                              env={**users, **caches}, timeout=300)
        assert done.returncode == 0, done.stderr[-3000:]
        np.testing.assert_allclose(np.load(tmp_path / f"{run}.npy"), here[2], rtol=0, atol=1e-13 * np.abs(here[2]).max())
    np.testing.assert_array_equal(np.load(tmp_path / "warm.npy"), np.load(tmp_path / "cold.npy"))
