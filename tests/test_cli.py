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
    assert "def kernel(" in out and "mlp_forward(nets['f'], 'tanh'" in out
    assert main(["inspect", "demo", "--method", "SETD1"]) == 0
    out = capsys.readouterr().out
    assert "def kernel(blk0, blk1," in out and "nogil=True" in out and "tree_step(" in out


def test_readme_shows_the_catalogue_as_it_is():
    from pathlib import Path

    from sdekit.catalogue import methods_table
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    assert methods_table() in readme


def test_cli_reports_user_errors_without_traceback(capsys):
    assert main(["inspect", "demo", "--method", "NoSuchMethod"]) == 2
    assert "unknown method 'NoSuchMethod'" in capsys.readouterr().err
