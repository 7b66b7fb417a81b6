"""``sk.External``: a network the host calls once per stage on the whole ensemble (numpy backend), against
the same network as an in-kernel ``sk.MLP``: the same solution, and exactly as many calls as the method's
stages (issue 16, item 1)."""
import numpy as np
import pytest
import sympy as sp

import sdekit as sk

RNG = np.random.default_rng(0)
W = [(RNG.normal(size=(16, 4)) / 2, RNG.normal(size=16) / 4), (RNG.normal(size=(3, 16)) / 4, RNG.normal(size=3) / 4)]


def _mlp_numpy(X):
    return np.tanh(X @ W[0][0].T + W[0][1]) @ W[1][0].T + W[1][1]


def _problem(kind, fn=_mlp_numpy, stochastic=False, n=7):
    """y' = k L y + f(y, t), f the 4-16-3 network as an in-kernel MLP or an External callable."""
    y, k = sk.states("y", 3), sk.params("k")
    term = (sk.MLP("f", [4, 16, 3]) if kind == "mlp" else sk.External("f", 4, 3))(list(y) + [sk.t])
    drift = k * sp.diag(-1, -2, -3) * y + term
    nets = {"f": W if kind == "mlp" else fn}
    params = {"k": np.linspace(0.5, 1.5, n)}
    if stochastic:
        prob = sk.SDEProblem(sk.SDE(y, drift, sp.Rational(1, 5), noise="diagonal"), y0=[0.5, -0.2, 0.1],
                             tspan=(0.0, 1.0), params=params, nets=nets)
    else:
        prob = sk.ODEProblem(sk.ODE(y, drift), y0=[0.5, -0.2, 0.1], tspan=(0.0, 1.0), params=params, nets=nets)
    return sk.Ensemble(prob, y0=np.random.default_rng(1).normal(size=(n, 3)), seed=4)


@pytest.mark.parametrize("method, kw", [("RK4", dict(dt=0.05)), ("ETDRK4", dict(dt=0.05)),
                                        ("Tsit5", dict(rtol=1e-8, atol=1e-8)), ("EM", dict(dt=0.01))])
def test_an_external_network_is_the_in_kernel_network(method, kw):
    stochastic = method == "EM"
    calls = []

    def fn(X):
        calls.append(X.shape)
        return _mlp_numpy(X)
    ens = _problem("ext", fn, stochastic)
    got = sk.solve(ens, method, **kw)
    want = sk.solve(_problem("mlp", stochastic=stochastic), method, backend="numpy", **kw)
    assert got.backend == "numpy"                        # the default for models with External networks
    np.testing.assert_allclose(got.y, want.y, rtol=1e-12, atol=1e-12)
    assert got.stats == want.stats
    assert all(shape == (7, 4) for shape in calls)       # one call per stage on the whole ensemble
    if "dt" in kw:      # fixed steps: every lane takes the same steps, one call per stage evaluation
        assert len(calls) == got.stats["nf"] // 7
    else:               # adaptive: the lanes step together, masked, until the slowest is done
        assert len(calls) >= got.stats["nf"] / 7


def test_a_torch_module_is_an_external_network():
    torch = pytest.importorskip("torch", reason="torch is an optional extra")
    seq = torch.nn.Sequential(torch.nn.Linear(4, 16), torch.nn.Tanh(), torch.nn.Linear(16, 3)).double()
    with torch.no_grad():
        for lin, (Wk, bk) in zip([seq[0], seq[2]], W):
            lin.weight.copy_(torch.as_tensor(Wk))
            lin.bias.copy_(torch.as_tensor(bk))
    got = sk.solve(_problem("ext", seq), "RK4", dt=0.05)
    want = sk.solve(_problem("mlp"), "RK4", dt=0.05, backend="numpy")
    np.testing.assert_allclose(got.y, want.y, rtol=1e-12, atol=1e-12)


def test_what_an_external_network_cannot_do_is_named():
    ens = _problem("ext")
    with pytest.raises(sk.ModelError, match="called by the host once per stage: backend='numpy'"):
        sk.solve(ens, "RK4", dt=0.1, backend="numba")
    with pytest.raises(sk.ModelError, match="has no Jacobian"):
        sk.solve(ens, "Exprb43", dt=0.1)
    with pytest.raises(ValueError, match="needs a callable"):
        _problem("ext", fn=[(1, 2)])
    with pytest.raises(ValueError, match=r"must return \(n, n_out\)"):
        sk.solve(_problem("ext", fn=lambda X: X[:, 0]), "RK4", dt=0.1)


def test_inspect_shows_the_host_call_and_an_external_pickles():
    import pickle
    ens = _problem("ext")
    src = sk.inspect(ens, "RK4")
    assert "external_forward(nets['f'], (" in src
    model = ens.problem.model
    assert pickle.loads(pickle.dumps(model)) == model
