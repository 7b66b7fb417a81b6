"""Scale-out on dask.distributed (issue 18 items 2-4), on a LocalCluster of 2 worker processes:
the gathered result is bit for bit the single-process solve for chunk sizes that do and do not
divide n, fixed and adaptive; reductions combine on arrival; a worker killed mid-solve is
replaced and its chunks recomputed with the result unchanged; a failing chunk names its
trajectories and leaves nothing running."""
import os
import time

import numpy as np
import pytest

import sdekit as sk
from sdekit.demo import demo_problem
from sdekit.distributed import Moments, Reduced, Reduction, chunk_bounds

distributed = pytest.importorskip("dask.distributed", reason="dask[distributed] is a test dependency (pyproject)")


@pytest.fixture(scope="module")
def client():
    cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None)
    with distributed.Client(cluster) as c:
        yield c
    cluster.close()


ENS = demo_problem(1000, seed=3)
SMALL = demo_problem(300, seed=3)         # adaptive lanes on one-thread workers: fewer of them
FIXED = dict(dt=0.01)
ADAPTIVE = dict(rtol=1e-2, atol=1e-2, saveat=[0.0, 0.25, 1.0])


@pytest.mark.parametrize("ens, method, options, chunk_size", [
    (ENS, "SETD1", FIXED, 250), (ENS, "SETD1", FIXED, 333), (ENS, "SETD1", FIXED, None),
    (SMALL, "SRA1", ADAPTIVE, 100), (SMALL, "SRA1", ADAPTIVE, 128)],
    ids=["fixed-divides", "fixed-does-not-divide", "fixed-automatic", "adaptive-divides", "adaptive-does-not-divide"])
def test_distributed_is_the_local_solve_bit_for_bit(client, ens, method, options, chunk_size):
    here = sk.solve(ens, method, **options)
    there = sk.solve(ens, method, **options, distributed=client, chunk_size=chunk_size)
    np.testing.assert_array_equal(there.y, here.y)
    np.testing.assert_array_equal(there.t, here.t)
    assert list(there.retcodes) == list(here.retcodes) and there.stats == here.stats and there.method == here.method
    assert there.trajectory_stats.keys() == here.trajectory_stats.keys()
    for k, v in here.trajectory_stats.items():
        np.testing.assert_array_equal(there.trajectory_stats[k], v)


def test_moments_reduce_on_the_workers(client):
    here = sk.solve(ENS, "SETD1", dt=0.01, saveat=[0.0, 0.5, 1.0]).y
    red = sk.solve(ENS, "SETD1", dt=0.01, saveat=[0.0, 0.5, 1.0], distributed=client, chunk_size=170,
                   reduction="moments")
    assert isinstance(red, Reduced) and isinstance(red.value, Moments) and red.value.count == 1000
    np.testing.assert_allclose(red.value.mean, here.mean(axis=0), rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(red.value.variance, here.var(axis=0, ddof=1), rtol=1e-10)
    assert red.retcodes == {"Success": 1000} and red.success and list(red.t) == [0.0, 0.5, 1.0]


def test_a_user_reduction_sees_each_chunk_and_its_trajectories(client):
    here = sk.solve(ENS, "SETD1", dt=0.01).y[:, -1, 0]
    count = Reduction(lambda sol, ab: (int(np.sum(sol.y[:, -1, 0] > 0)), ab[1] - ab[0]),
                      lambda x, y: (x[0] + y[0], x[1] + y[1]))
    red = sk.solve(ENS, "SETD1", dt=0.01, distributed=client, chunk_size=300, reduction=count)
    assert red.value == (int(np.sum(here > 0)), 1000)


def _kill_once(marker):
    """A reduction whose first chunk, on whichever worker runs it, kills that worker's process
    after solving (its results and any others held there are lost)."""
    def chunk(sol, ab):
        try:
            os.close(os.open(marker, os.O_CREAT | os.O_EXCL))
        except FileExistsError:
            return {ab[0]: sol.y}
        os._exit(1)
    return Reduction(chunk, lambda x, y: {**x, **y}, lambda d: np.concatenate([d[a] for a in sorted(d)]))


def test_a_worker_killed_mid_solve_is_replaced_and_the_result_is_unchanged(client, tmp_path):
    here = sk.solve(ENS, "SETD1", dt=0.01).y
    red = sk.solve(ENS, "SETD1", dt=0.01, distributed=client, chunk_size=125, reduction=_kill_once(tmp_path / "dead"),
                   retries=3)
    assert (tmp_path / "dead").exists()                   # a worker did die
    np.testing.assert_array_equal(red.value, here)
    deadline = time.time() + 60
    while len(client.nthreads()) < 2 and time.time() < deadline:   # the nanny brings it back
        time.sleep(0.2)
    assert len(client.nthreads()) == 2


def _chunks_still_running(client, within: float) -> list:
    """The sdekit chunk tasks the scheduler still has in processing after waiting up to ``within`` s."""
    def running():
        return [k for keys in client.processing().values() for k in keys if str(k).startswith("sdekit-chunk")]
    deadline = time.time() + within
    while running() and time.time() < deadline:
        time.sleep(0.05)
    return running()


def test_a_failing_chunk_names_its_trajectories_and_nothing_is_left_running(client):
    """The other chunks would run for 10 x 4 s; after the failure the solve's futures are cancelled,
    so within 2 s the scheduler has none of them left (a running task is released, queued ones never start)."""
    def chunk(sol, ab):
        if ab[0] == 0:
            raise ValueError("boom")
        time.sleep(4.0)
        return 0
    with pytest.raises(RuntimeError, match=r"chunk of trajectories 0\.\.99 failed: ValueError: boom"):
        sk.solve(ENS, "SETD1", dt=0.01, distributed=client, chunk_size=100, retries=0,
                 reduction=Reduction(chunk, lambda x, y: x + y))
    assert not _chunks_still_running(client, within=2.0)


def test_an_interrupt_in_the_client_cancels_the_outstanding_chunks(client):
    """SystemExit stands for Ctrl-C (a BaseException, as KeyboardInterrupt is, which pytest keeps for
    itself; and a builtin, so the workers can unpickle the reduction that names it)."""
    def chunk(sol, ab):
        time.sleep(0 if ab[0] < 200 else 4.0)
        return 1

    def combine(x, y):
        raise SystemExit("interrupted")      # the user presses Ctrl-C while the first results come in
    with pytest.raises(SystemExit):
        sk.solve(ENS, "SETD1", dt=0.01, distributed=client, chunk_size=100, reduction=Reduction(chunk, combine))
    assert not _chunks_still_running(client, within=2.0)


def test_chunk_bounds_cover_every_trajectory_once():
    for n, size in [(1000, 250), (1000, 333), (7, 100), (1, 1)]:
        b = chunk_bounds(n, size, 2)
        assert b[0][0] == 0 and b[-1][1] == n and all(x[1] == y[0] for x, y in zip(b, b[1:]))
    assert chunk_bounds(10**6, None, 2)[0] == (0, 125000)
    with pytest.raises(ValueError, match="chunk_size must be an integer >= 1"):
        chunk_bounds(10, 0, 2)


def test_chunked_options_are_checked():
    with pytest.raises(ValueError, match="chunked and distributed solves take an Ensemble"):
        sk.solve(ENS.problem, "SETD1", dt=0.01, distributed=True)
    with pytest.raises(ValueError, match="reduction must be 'moments'"):
        sk.solve(ENS, "SETD1", dt=0.01, chunk_size=100, reduction="median")
    with pytest.raises(ValueError, match="distributed must be a dask.distributed.Client"):
        sk.solve(ENS, "SETD1", dt=0.01, distributed=object())
    with pytest.raises(ValueError, match="retries must be an integer"):
        sk.solve(ENS, "SETD1", dt=0.01, chunk_size=100, retries=-1)
    for target in (ENS, ENS.problem):          # not chunked, these options are unused, and still checked
        for key, value, message in (("retries", -1, "retries must be an integer >= 0, got -1"),
                                    ("retries", 1.5, "retries must be an integer"),
                                    ("store_format", "hdf5", "store_format must be one of 'auto', 'zarr', 'npy', got 'hdf5'"),
                                    ("store_format", None, "store_format must be one of")):
            with pytest.raises(ValueError, match=message):
                sk.solve(target, "SETD1", dt=0.01, **{key: value})
    with pytest.raises(ValueError, match="memory_limit must be a number of bytes"):
        sk.solve(ENS, "SETD1", dt=0.01, memory_limit="1GB")
    for key, value in (("chunk_size", 0), ("chunk_size", False), ("memory_limit", 0)):   # a value, not a keyword, is wrong
        with pytest.raises(ValueError, match=f"{key} must be"):
            sk.solve(ENS, "SETD1", dt=0.01, **{key: value})
