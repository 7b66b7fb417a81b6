"""Every catalogue method proves its claims from its tableau: no method is listed by hand here, so a
new table cannot skip its proof.  (The ODE convergence test iterates over the catalogue too,
test_methods.test_claimed_order; the SDE strong/weak order tests are still listed by hand.)"""
import pytest

from sdekit.codegen import check_order
from sdekit.codegen.methods import CATALOGUE
from sdekit.codegen.tableau import ExponentialTableau


def claimed(method):
    """The order the catalogue states for the condition set check_order proves by default."""
    if method.stochastic and method.family == "sra":
        return method.strong_order
    return method.stiff_order or method.order


@pytest.mark.parametrize("method", CATALOGUE, ids=[m.name for m in CATALOGUE])
def test_tableau_proves_the_catalogued_order(method):
    report = check_order(method.tableau)
    assert report.order >= claimed(method), (method.name, report)


EXPONENTIAL = [m for m in CATALOGUE if isinstance(m.tableau, ExponentialTableau)]


@pytest.mark.parametrize("method", EXPONENTIAL, ids=[m.name for m in EXPONENTIAL])
def test_exponential_tableau_proves_its_classical_order(method):
    """Exponential RK: the classical order on y' = Ly + N (non-stiff), beside the stiff order above."""
    report = check_order(method.tableau, stiff=False)
    assert report.order >= method.order, (method.name, report)


EMBEDDED = [m for m in CATALOGUE if m.embedded_order is not None and hasattr(m.tableau, "bhat")]


@pytest.mark.parametrize("method", EMBEDDED, ids=[m.name for m in EMBEDDED])
def test_embedded_weights_prove_the_estimator_order(method):
    report = check_order(method.tableau, embedded=True)
    assert report.order >= method.embedded_order, (method.name, report)


DENSE = [m for m in CATALOGUE if getattr(m.tableau, "dense", None) is not None]


def test_dp5_and_tsit5_have_continuous_extensions():
    assert {"DP5", "Tsit5"} <= {m.name for m in DENSE}


@pytest.mark.parametrize("method", DENSE, ids=[m.name for m in DENSE])
def test_continuous_extension_proves_its_order(method):
    """b_i(θ) of the continuous extension: order dense_order at every θ, and not one more."""
    tab = method.tableau
    report = check_order(tab, dense=True)
    assert report.order == tab.dense_order, (method.name, report)
