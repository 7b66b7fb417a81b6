import math

import numpy as np
from scipy import stats

from sdekit.abi import STREAM_W, STREAM_ZETA
from sdekit.kernels.numba_runtime import log_pos
from sdekit.kernels.philox import normals, philox_words

# Random123 kat_vectors, "philox4x32 10" lines: counter[4] key[2] -> output[4]
KAT = [
    ((0, 0, 0, 0), (0, 0), (0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8)),
    ((0xFFFFFFFF,) * 4, (0xFFFFFFFF,) * 2, (0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD)),
    ((0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344), (0xA4093822, 0x299F31D0),
     (0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1)),
]


def test_known_answer_vectors():
    for ctr, key, want in KAT:
        got = philox_words(np.array(ctr)[:, None], key)
        assert [int(x) for x in got[:, 0]] == list(want)


def test_normals_are_standard_and_streams_independent():
    traj = np.arange(50_000)
    z = normals(7, 3, traj, STREAM_W, 4)
    assert z.shape == (4, 50_000)
    for row in z:
        assert stats.kstest(row, "norm").pvalue > 1e-3
    z2 = normals(7, 3, traj, STREAM_ZETA, 4)
    assert abs(np.corrcoef(z[0], z2[0])[0, 1]) < 0.02
    assert abs(np.corrcoef(z[0], z[1])[0, 1]) < 0.02
    # components beyond 4 come from the next counter group, not a repeat
    z8 = normals(7, 3, traj[:100], STREAM_W, 8)
    assert np.array_equal(z8[:4], z[:, :100]) and not np.allclose(z8[4:], z8[:4])


def test_box_muller_tail_bound():
    """The smallest uniform Philox can give, (0 + 1/2) 2^-32, bounds the radius: |Z| <= 6.67 < 6.77."""
    assert math.sqrt(-2.0 * log_pos(0.5 * 2.0**-32)) < 6.77
