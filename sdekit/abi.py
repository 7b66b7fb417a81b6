"""The kernel ABI: every number and layout that the symbolic layer (``sdekit.codegen``, which prints
solvers) and the runtime layer (``sdekit.kernels``, which runs them) must agree on — defined here
once.  This module imports nothing from sdekit, so both layers may import it (DESIGN.md "one ABI
module"); no literal below appears anywhere else.
"""

#: retcodes in increasing severity (a Solution's overall code is the worst of its trajectories)
RETCODES = ("Success", "MaxIters", "DtLessThanMin", "Unstable")
SUCCESS, MAX_ITERS, DT_LESS_THAN_MIN, UNSTABLE = range(len(RETCODES))

#: kernel-counted statistics, one row each in a kernel's ``stats`` (3, n) output
STATS = ("nf", "naccept", "nreject")
NF, NACCEPT, NREJECT = range(len(STATS))

#: Numba flags of all compiled code, generated kernels and runtime functions alike (FMA contraction,
#: numpy error model).  One set matters: Numba links a callee compiled first from Python with that
#: compile's flags, so mixed flags made a kernel's bits depend on what had run before it.
JIT_FLAGS = {"cache": True, "error_model": "numpy", "fastmath": {"contract"}}

#: Philox4x32-10 counter streams (counter word 3 = stream << 16 | group of four normals)
STREAM_W = 0       #: Brownian tree nodes: Z1 (for W) and Z2 (for the Lévy area H) of every split
STREAM_ZETA = 1    #: SETD1's conditional stochastic-convolution normals, one node per step

#: the (W, H) Brownian tree (kernels/brownian.py) addresses [t0, t0 + T] by integer positions in units of
#: T / TREE_UNITS; TREE_UNITS = 2^27 5^11 < 2^53, so every T / (2^a 5^b) grid (a <= 27, b <= 11) is a set of
#: positions, and float times convert exactly enough
TREE_POW2, TREE_POW5 = 27, 11
TREE_UNITS = 2**TREE_POW2 * 5**TREE_POW5
#: cells narrower than this (units) split at their middle instead of at their coarsest point
TREE_FINE = 2**24
#: a time within this many units (plus its float rounding) of a coarser position is that position
TREE_SNAP = 4.0
#: most cells on a tree frontier (one per depth; no point is deeper than ~95 splits: kernels/brownian.split_point)
TREE_STACK = 128
#: counter node of step n's per-step normals (SETD1's stochastic convolution): STEP_NODE + n
STEP_NODE = 1 << 62

#: a step that would end within this fraction of its length before a stop is stretched onto it
#: (no sliver steps; OrdinaryDiffEq and diffrax do the same with their own margins)
STOP_STRETCH = 0.01

#: layout of the controller vector ``ctrl`` of adaptive kernels: gains on ε_n, ε_{n-1}, ε_{n-2},
#: safety factor, clip range, order of the error estimate (for the initial step)
CONTROLLER = ("b1", "b2", "b3", "safety", "qmin", "qmax", "order")

#: trajectories per block of the fused CPU kernel (lanes of one structure-of-arrays block)
BLOCK = 128

#: fixed arguments of the fixed-step kernel, in order (after ``blk0, blk1``)
FIXED_ARGS = ("y0", "first", "key0", "key1", "times", "tn_d", "h_d", "hclass", "tree_T", "tree_pos",
              "save_at", "out", "retcode", "stats")
#: fixed arguments of the adaptive kernel, in order (after ``blk0, blk1``)
ADAPTIVE_ARGS = ("y0", "first", "key0", "key1", "t0", "t1", "tree_T", "h0", "rtol", "atol", "ctrl", "dtmin", "dtmax",
                 "maxiters", "stops", "save_t", "record", "out", "out_t", "nsaved", "retcode", "stats")


# Runtime (model-dependent) arguments follow the fixed ones; each is a (value, trajectory stride) pair
# or a plain array.  These name them; codegen lists them per model, kernels fill them by the same names.
def param_args(name: str) -> tuple:
    """Values and trajectory stride (1: one value per trajectory, 0: shared) of parameter ``name``."""
    return f"P_{name}", f"S_{name}"


def weight_args(net: str, layer: int) -> tuple:
    """Weight matrix (out, in) and bias of layer ``layer`` of network ``net``."""
    return f"{net}_W{layer}", f"{net}_b{layer}"


#: the numeric linear part and its trajectory stride
LINEAR_ARGS = ("Lm", "S_L")

#: the numpy backend's model arguments (after the fixed ones; ``emit_numpy.numpy_arguments`` picks them):
#: the host's values as they are — params, networks, L (``kernels.linear.linear_value``), ``operators(hc)``
#: (fixed steps: the operators of step class hc), the progress flag — not laid out as the compiled kernels'
NUMPY_MODEL_ARGS = ("p", "nets", "L", "operators", "progress")

#: a field kernel's model arguments (``codegen.emit_field``): the field's runtime object
#: (``kernels.field_runtime.FieldLanes``), its operators' values for a step size, the progress flag
FIELD_MODEL_ARGS = ("field", "operators", "progress")

#: axes of the model's array arguments, by the layout of what they hold: ``traj`` is indexed by trajectory
#: times the argument's stride (0: one value shared by all), ``hclass`` by the fixed step's size class.
#: ``Lm``: an elementwise (scalar, diagonal) L is (d, n'), a dense one (n', d, d); ``op_X``: per step class.
LINEAR_LAYOUT = {"elementwise": ("i", "traj"), "dense": ("traj", "i", "j")}
OPERATOR_LAYOUT = {"elementwise": ("hclass", "i", "traj"), "dense": ("hclass", "traj", "i", "j")}


def entry(axes: tuple, **index: str) -> tuple:
    """The index expressions of one entry of an array with ``axes`` (``LINEAR_LAYOUT[...]``, ...), from an
    expression per axis name: ``entry(LINEAR_LAYOUT["dense"], traj="s * S_L", i="0", j="j")``."""
    return tuple(index[a] for a in axes)


def view(name: str, layout: tuple, axes: tuple) -> str:
    """Expression text of array ``name``, stored in ``layout``, as a view with ``axes`` in that order (for a
    runtime algorithm that indexes it so: ``view("Lm", LINEAR_LAYOUT["dense"], ("traj", "i", "j"))``)."""
    perm = tuple(layout.index(a) for a in axes)
    return name if perm == tuple(range(len(layout))) else f"{name}.transpose({perm})"


def operator_args(name: str) -> tuple:
    """Values per step class of the step-size operator ``name`` and its trajectory stride."""
    return f"op_{name}", f"S_op_{name}"


#: the fixed arguments a kernel writes (the rest are its inputs)
OUTPUT_ARGS = ("out", "out_t", "nsaved", "retcode", "stats")

#: element type of every fixed argument: an array (``[]``) of, or a scalar of, ``state`` (the kernel's
#: dtype), ``f64``, ``i64``, ``u64``, ``i8`` or ``bool`` (typed printers, e.g. CUDA C, declare them so)
ARG_TYPES = {
    "y0": "state[]", "first": "i64", "key0": "u64", "key1": "u64", "times": "f64[]", "tn_d": "state[]",
    "h_d": "state[]", "hclass": "i64[]", "tree_T": "f64", "tree_pos": "i64[]", "save_at": "i64[]",
    "out": "state[]", "retcode": "i8[]", "stats": "i64[]", "t0": "f64", "t1": "f64", "h0": "f64",
    "rtol": "f64[]", "atol": "f64[]", "ctrl": "f64[]", "dtmin": "f64", "dtmax": "f64", "maxiters": "i64",
    "stops": "f64[]", "save_t": "f64[]", "record": "bool", "out_t": "f64[]", "nsaved": "i64[]",
}


def arg_type(name: str) -> str:
    """Element type of kernel argument ``name`` (fixed, or named by the helpers above)."""
    if name in ARG_TYPES:
        return ARG_TYPES[name]
    if name.startswith("S_"):                   # trajectory strides: S_<param>, S_L, S_op_<op>
        return "i64"
    return "state[]"                            # P_<param>, weights, Lm, op_<op>
