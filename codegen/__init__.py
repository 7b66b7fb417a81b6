"""sdekit.codegen — the symbolic layer (sympy + numpy only; never imports numba or kernels).

Semilinear analysis, φ-functions, tableaus, the method catalogue, the language-neutral
step scheme, and one emitter per backend.
"""
from .analysis import LINEAR_STRUCTURES, NOISE_SHAPES, Param, SemilinearForm, analyse, t
from .errors import ModelError
from .methods import CATALOGUE, Method, get_method
from .neural import MLP, NetCall
from .families import FAMILIES, Family, check_order, family_of
from .order_conditions import OrderReport
from .phi import phi, resolvent, z
from .tableau import ButcherTableau, ExponentialTableau, RosenbrockTableau, SRATableau, TASETableau
