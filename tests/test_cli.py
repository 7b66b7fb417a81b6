import numpy as np

from sdekit.cli import main
from sdekit.demo import run_demo


def test_demo_table_and_plot(tmp_path):
    out = tmp_path / "demo.png"
    rows = run_demo(n=32, levels=(4, 6), ref_level=9, out=str(out), quiet=True)
    assert out.stat().st_size > 10_000
    by = {(r["method"], r["dt"]): r for r in rows}
    # SETD1 is stable at every dt; EM blows up while |λ| dt > 2 (λ = -400)
    assert by[("SETD1", 2.0**-4)]["rms_error"] < 0.1
    assert not by[("EM", 2.0**-4)]["rms_error"] < 1.0
    assert by[("SETD1", 2.0**-6)]["rms_error"] < by[("SETD1", 2.0**-4)]["rms_error"]
    assert np.isfinite(by[("SETD1", 2.0**-6)]["throughput"])


def test_cli_methods_and_inspect(capsys):
    assert main(["methods"]) == 0
    assert "SETD1" in capsys.readouterr().out
    assert main(["inspect", "demo", "--method", "EM", "--backend", "numpy"]) == 0
    out = capsys.readouterr().out
    assert "def kernel(" in out and "mlp_forward(nets['f'], act_tanh" in out and "def act_tanh(x):" in out
    assert main(["inspect", "demo", "--method", "SETD1"]) == 0
    out = capsys.readouterr().out
    assert "def kernel(blk0, blk1," in out and "nogil=True" in out and "tree_step(" in out
    # the CUDA C of the demo's neural SDE, float32: the printed tree and Philox, the weights read into shared memory
    assert main(["inspect", "demo", "--method", "EM", "--backend", "cuda", "--dtype", "float32"]) == 0
    out = capsys.readouterr().out
    assert "typedef float real;" in out and "__device__ void tree_advance(" in out and "__shared__ __align__(16) real s_f_W0" in out


def test_readme_shows_the_catalogue_as_it_is():
    from pathlib import Path

    from sdekit.catalogue import methods_table
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    assert methods_table() in readme


def test_the_readme_examples_define_every_name_they_use():
    """pyflakes over the README's python blocks: a block that does not import sdekit continues the one before
    (the Adaptive stepping lines reuse the Quick start's problem), so a name used but never defined fails."""
    import io
    import re
    from pathlib import Path

    from pyflakes.api import check
    from pyflakes.reporter import Reporter
    blocks = re.findall(r"```python\n(.*?)```", (Path(__file__).parents[1] / "README.md").read_text(), re.S)
    chains = []
    for block in blocks:
        if re.search(r"^import .*\bsdekit as sk\b", block, re.M) or not chains:
            chains.append(block)
        else:
            chains[-1] += "\n" + block
    assert len(blocks) >= 5 and len(chains) >= 4
    for source in chains:
        out = io.StringIO()
        assert check(source, "README.md", Reporter(out, out)) == 0, out.getvalue()


def test_cli_reports_user_errors_without_traceback(capsys):
    assert main(["inspect", "demo", "--method", "NoSuchMethod"]) == 2
    assert "unknown method 'NoSuchMethod'" in capsys.readouterr().err
    import pytest
    with pytest.raises(SystemExit) as exit_:
        main(["demo", "--n", "0"])
    assert exit_.value.code == 2 and "--n: must be an integer >= 1, got '0'" in capsys.readouterr().err
    assert main(["demo", "--out", "/no/such/folder/x.png"]) == 2          # named before the demo runs
    assert "the folder /no/such/folder does not exist" in capsys.readouterr().err
    assert main(["demo", "inversion", "--backend", "bogus"]) == 2
    assert "'demo inversion' runs its samplers on the host and takes none" in capsys.readouterr().err


def test_inspect_into_a_closed_pipe_is_quiet():
    """``sdekit inspect demo | head -1``: the reader is gone before the writer writes (closed here at once, while the
    child still imports: deterministic, where a real head races the 5 kB write); no BrokenPipeError traceback, exit 0."""
    import subprocess
    import sys
    proc = subprocess.Popen([sys.executable, "-m", "sdekit.cli", "inspect", "demo", "--backend", "numpy"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    proc.stdout.close()
    err = proc.stderr.read()
    assert proc.wait() == 0 and err == "", err



def test_cli_inspects_a_module_of_the_current_folder(tmp_path, monkeypatch, capsys):
    (tmp_path / "user_model_cli.py").write_text(
        "import sympy as sp\nimport sdekit as sk\ny = sk.states('y', 2)\node = sk.ODE(y, sp.Matrix([-y[0], -2 * y[1]]))\n")
    monkeypatch.chdir(tmp_path)
    assert main(["inspect", "user_model_cli:ode", "--backend", "numpy"]) == 0   # default method fits an ODE
    assert "RK4" in capsys.readouterr().out
    assert main(["inspect", "user_model_cli:nope"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "has no attribute 'nope'" in err and "'ode'" in err
    assert main(["inspect", "no_such_module_xyz:m"]) == 2
    assert "cannot import 'no_such_module_xyz'" in capsys.readouterr().err


def test_cli_version_help_and_python_m(capsys):
    import subprocess
    import sys

    import sdekit
    assert main([]) == 0 and "usage: sdekit" in capsys.readouterr().out
    try:
        main(["--version"])
    except SystemExit as e:
        assert e.code == 0
    assert capsys.readouterr().out.strip() == f"sdekit {sdekit.__version__}"
    out = subprocess.run([sys.executable, "-m", "sdekit", "methods"], capture_output=True, text=True, check=True)
    assert "SETD1" in out.stdout
    assert "``" not in out.stdout


def test_names_are_suggested_and_state_dicts_explained():
    import pytest
    import sympy as sp

    import sdekit as sk
    y = sk.states("y", 2)
    k = sk.params("k")
    net = sk.MLP("f", [2, 3, 2])
    model = sk.ODE(y, k * y + net(y))
    w = [(np.zeros((3, 2)), np.zeros(3)), (np.zeros((2, 3)), np.zeros(2))]
    for params in ({"kk": 1.0}, {"k": 1.0, "kk": 1.0}):
        with pytest.raises(ValueError, match=r"unknown parameters \['kk'\] \(did you mean 'k'\?\)"):
            sk.ODEProblem(model, y0=[1, 1], tspan=(0, 1), params=params, nets={"f": w})
    with pytest.raises(ValueError, match=r"unknown networks \['g'\]"):
        sk.ODEProblem(model, y0=[1, 1], tspan=(0, 1), params={"k": 1.0}, nets={"g": w})
    with pytest.raises(ValueError, match=r"ODEProblem\(\) needs tspan"):
        sk.ODEProblem(model, y0=[1, 1], params={"k": 1.0}, nets={"f": w})
    prob = sk.ODEProblem(model, y0=[1, 1], tspan=(0, 1), params={"k": 1.0}, nets={"f": w})
    with pytest.raises(TypeError, match="Ensemble\\(\\) got an unknown keyword 'sead'; did you mean 'seed'"):
        sk.Ensemble(prob, n=3, sead=1)
    with pytest.raises(ValueError, match="inspect needs a sdekit ODE/SDE, problem or Ensemble, got MutableDenseMatrix"):
        sk.inspect(sp.Matrix([1]), "RK4")
    assert "def kernel" in sk.inspect(sk.Ensemble(prob, n=2), "RK4", backend="numpy")
    with pytest.raises(TypeError, match="ODEProblem\\(\\) got an unknown keyword 'parms'; did you mean 'params'") as e:
        sk.ODEProblem(model, y0=[1, 1], tspan=(0, 1), parms={"k": 1.0})
    assert "_Problem" not in str(e.value)
    state_dict = {"0.weight": w[0][0], "0.bias": w[0][1], "2.weight": w[1][0], "2.bias": w[1][1]}
    with pytest.raises(ValueError, match="state_dict\\(\\)\\?\\): pass the Sequential itself"):
        sk.ODEProblem(model, y0=[1, 1], tspan=(0, 1), params={"k": 1.0}, nets={"f": state_dict})
