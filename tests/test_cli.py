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
