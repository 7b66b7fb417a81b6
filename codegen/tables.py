"""Coefficient tables of the catalogue, as data (OrdinaryDiffEq.jl keeps them apart from the
stepping code in the same way).  Every table validates itself when built
(:mod:`sdekit.codegen.tableau`) and is proven by :func:`sdekit.codegen.order_conditions.check_order`
in the tests.  Sources: ``methods.md`` (section named per table) and the papers cited.
"""
from __future__ import annotations

import sympy as sp

from . import derive
from .phi import phi, z
from .tableau import (AdamsTableau, ButcherTableau, ExponentialTableau, ExpRosenbrockTableau, RosenbrockTableau,
                      SRATableau)

R = sp.Rational


def F(s: str) -> sp.Float:
    """A published decimal coefficient, kept to all its digits."""
    return sp.Float(s, 60)


def p(k: int, c=1):
    """φ_k(c z)."""
    return phi(k, c * z)


# ----------------------------------------------------------------------------- explicit RK
EULER = ButcherTableau(A=((0,),), b=(1,), c=(0,), order=1, name="Euler")

HEUN = ButcherTableau(  # Heun 1900; Hairer, Nørsett & Wanner I, Table II.1.1 (embedded Euler)
    A=((0, 0), (1, 0)), b=(R(1, 2), R(1, 2)), c=(0, 1), order=2, bhat=(1, 0), embedded_order=1, name="Heun",
)

MIDPOINT = ButcherTableau(  # Runge 1895; methods.md §3.2 (the p = 2 partner of TASE)
    A=((0, 0), (R(1, 2), 0)), b=(0, 1), c=(0, R(1, 2)), order=2, name="Midpoint",
)

RALSTON3 = ButcherTableau(  # Ralston 1962, Math Comp 16:431; methods.md §3.2
    A=((0, 0, 0), (R(1, 2), 0, 0), (0, R(3, 4), 0)), b=(R(2, 9), R(1, 3), R(4, 9)), c=(0, R(1, 2), R(3, 4)),
    order=3, name="Ralston3",
)

RK4 = ButcherTableau(  # Kutta 1901; Hairer, Nørsett & Wanner I, Table II.1.2
    A=((0, 0, 0, 0), (R(1, 2), 0, 0, 0), (0, R(1, 2), 0, 0), (0, 0, 1, 0)),
    b=(R(1, 6), R(1, 3), R(1, 3), R(1, 6)), c=(0, R(1, 2), R(1, 2), 1), order=4, name="RK4",
)

_DP5_B = (R(35, 384), 0, R(500, 1113), R(125, 192), R(-2187, 6784), R(11, 84), 0)
DP5 = ButcherTableau(  # Dormand & Prince 1980, JCAM 6:19, Table 2 (FSAL 5(4) pair)
    A=(
        (0, 0, 0, 0, 0, 0, 0),
        (R(1, 5), 0, 0, 0, 0, 0, 0),
        (R(3, 40), R(9, 40), 0, 0, 0, 0, 0),
        (R(44, 45), R(-56, 15), R(32, 9), 0, 0, 0, 0),
        (R(19372, 6561), R(-25360, 2187), R(64448, 6561), R(-212, 729), 0, 0, 0),
        (R(9017, 3168), R(-355, 33), R(46732, 5247), R(49, 176), R(-5103, 18656), 0, 0),
        _DP5_B,
    ),
    b=_DP5_B, c=(0, R(1, 5), R(3, 10), R(4, 5), R(8, 9), 1, 1), order=5,
    bhat=(R(5179, 57600), 0, R(7571, 16695), R(393, 640), R(-92097, 339200), R(187, 2100), R(1, 40)),
    embedded_order=4, name="DP5",
    # Hairer's DOPRI5 dense output (HNW I §II.6, eq. 6.12; Shampine 1986): rcont1..5 with the d_i of
    # dopri5.f, expanded to b_i(θ) = Σ_k w_ik θ^k (k = 1..4); order 4
    dense=((1, R(-8048581381, 2820520608), R(8663915743, 2820520608), R(-12715105075, 11282082432)),
           (0, 0, 0, 0),
           (0, R(131558114200, 32700410799), R(-68118460800, 10900136933), R(87487479700, 32700410799)),
           (0, R(-1754552775, 470086768), R(14199869525, 1410260304), R(-10690763975, 1880347072)),
           (0, R(127303824393, 49829197408), R(-318862633887, 49829197408), R(701980252875, 199316789632)),
           (0, R(-282668133, 205662961), R(2019193451, 616988883), R(-1453857185, 822651844)),
           (0, R(40617522, 29380423), R(-110615467, 29380423), R(69997945, 29380423))),
    dense_order=4,
)

_TS_A = (
    (F("0.161"),),
    (F("-0.8480655492356988544426874250230774675121177393430391537369234245294192976164141156943e-2"),
     F("0.3354806554923569885444268742502307746751211773934303915373692342452941929761641411569")),
    (F("2.897153057105493432130432594192938764924887287701866490314866693455023795137503079289"),
     F("-6.359448489975074843148159912383825625952700647415626703305928850207288721235210244366"),
     F("4.362295432869581411017727318190886861027813359713760212991062156752264926097707165077")),
    (F("5.325864828439256604428877920840511317836476253097040101202360397727981648835607691791"),
     F("-11.74888356406282787774717033978577296188744178259862899288666928009020615663593781589"),
     F("7.495539342889836208304604784564358155658679161518186721010132816213648793440552049753"),
     F("-0.9249506636175524925650207933207191611349983406029535244034750452930469056411389539635e-1")),
    (F("5.861455442946420028659251486982647890394337666164814434818157239052507339770711679748"),
     F("-12.92096931784710929170611868178335939541780751955743459166312250439928519268343184452"),
     F("8.159367898576158643180400794539253485181918321135053305748355423955009222648673734986"),
     F("-0.7158497328140099722453054252582973869127213147363544882721139659546372402303777878835e-1"),
     F("-0.2826905039406838290900305721271224146717633626879770007617876201276764571291579142206e-1")),
)
_TS_B = (
    F("0.9646076681806522951816731316512876333711995238157997181903319145764851595234062815396e-1"),
    F("0.01"),
    F("0.4798896504144995747752495322905965199130404621990332488332634944254542060153074523509"),
    F("1.379008574103741893192274821856872770756462643091360525934940067397245698027561293331"),
    F("-3.290069515436080679901047585711363850115683290894936158531296799594813811049925401677"),
    F("2.324710524099773982415355918398765796109060233222962411944060046314465391054716027841"),
    0,
)
_TS_BHAT = (
    F("0.9468075576583945807478876255758922856117527357724631226139574065785592789071067303271e-1"),
    F("0.9183565540343253096776363936645313759813746240984095238905939532922955247253608687270e-2"),
    F("0.4877705284247615707855642599631228241516691959761363774365216240304071651579571959813"),
    F("1.234297566930478985655109673884237654035539930748192848315425833500484878378061439761"),
    F("-2.707712349983525454881109975059321670689605166938197378763992255714444407154902012702"),
    F("1.866628418170587035753719399566211498666255505244122593996591602841258328965767580089"),
    R(1, 66),
)
TSIT5 = ButcherTableau(  # Tsitouras 2011, Comput Math Appl 62:770 (digits as in diffrax _solver/tsit5.py)
    A=tuple(row + (0,) * (7 - len(row)) for row in ((0,),) + _TS_A + (_TS_B[:6],)),
    b=_TS_B, c=(0, F("0.161"), F("0.327"), F("0.9"),
                F("0.9800255409045096857298102862870245954942137979563024768854764293221195950761080302604"), 1, 1),
    order=5, bhat=_TS_BHAT, embedded_order=4, name="Tsit5",
    # Tsitouras 2011 §3 continuous extension, b_i(θ) = Σ_k r_ik θ^k (digits as OrdinaryDiffEq's r11..r74)
    dense=tuple(tuple(F(x) for x in row) for row in (
        ("1.0", "-2.763706197274826", "2.9132554618219126", "-1.0530884977290216"),
        ("0", "0.13169999999999998", "-0.2234", "0.1017"),
        ("0", "3.9302962368947516", "-5.941033872131505", "2.490627285651253"),
        ("0", "-12.411077166933676", "30.33818863028232", "-16.548102889244902"),
        ("0", "37.50931341651104", "-88.1789048947664", "47.37952196281928"),
        ("0", "-27.896526289197286", "65.09189467479366", "-34.87065786149661"),
        ("0", "1.5", "-4", "2.5"))),
    dense_order=4,
)

# ------------------------------------------------------------------- exponential RK (methods.md §1.3)
ETD1 = ExponentialTableau(A=((0,),), b=(p(1),), c=(0,), order=1, stiff_order=1, name="ETD1")

LAWSON_EULER = ExponentialTableau(  # Lawson 1967, SINUM 4:372; methods.md §1.4: y+ = e^{hL}(y + hN)
    A=((0,),), b=(p(0),), c=(0,), order=1, stiff_order=1, kind="lawson", name="LawsonEuler",
)

ETDRK2 = ExponentialTableau(  # Cox & Matthews 2002, JCP 176:430, eq. (22)
    A=((0, 0), (p(1), 0)), b=(p(1) - p(2), p(2)), c=(0, 1), order=2, stiff_order=2, name="ETDRK2",
    bhat=(p(1), 0), embedded_order=1,   # the exponential Euler step of the same stages
)

_b1 = p(1) - 3 * p(2) + 4 * p(3)
ETDRK3 = ExponentialTableau(  # Cox & Matthews 2002, eq. (23)-(25)
    A=((0, 0, 0), (p(1, R(1, 2)) / 2, 0, 0), (-p(1), 2 * p(1), 0)),
    b=(_b1, 4 * p(2) - 8 * p(3), 4 * p(3) - p(2)), c=(0, R(1, 2), 1), order=3, stiff_order=2, name="ETDRK3",
    # embedded: the stiff-order-2 weights on the stages c = 0, 1/2 (Σb = φ_1, Σbc = φ_2; HO2005 Table 2.1)
    bhat=(p(1) - 2 * p(2), 2 * p(2), 0), embedded_order=2,
)

_b23 = 2 * p(2) - 4 * p(3)
_b4 = -p(2) + 4 * p(3)
ETDRK4 = ExponentialTableau(  # Cox & Matthews 2002, eq. (26)-(29)
    A=((0, 0, 0, 0),
       (p(1, R(1, 2)) / 2, 0, 0, 0),
       (0, p(1, R(1, 2)) / 2, 0, 0),
       (p(1, R(1, 2)) * (p(0, R(1, 2)) - 1) / 2, 0, p(1, R(1, 2)), 0)),
    b=(_b1, _b23, _b23, _b4), c=(0, R(1, 2), R(1, 2), 1), order=4, stiff_order=2, name="ETDRK4",
)

KROGSTAD = ExponentialTableau(  # Krogstad 2005, JCP 203:72 (ETDRK4-B); Hochbruck & Ostermann 2010, §2.3
    A=((0, 0, 0, 0),
       (p(1, R(1, 2)) / 2, 0, 0, 0),
       (p(1, R(1, 2)) / 2 - p(2, R(1, 2)), p(2, R(1, 2)), 0, 0),
       (p(1) - 2 * p(2), 0, 2 * p(2), 0)),
    b=(_b1, _b23, _b23, _b4), c=(0, R(1, 2), R(1, 2), 1), order=4, stiff_order=3, name="Krogstad",
)

_a52 = p(2, R(1, 2)) / 2 - p(3) + p(2) / 4 - p(3, R(1, 2)) / 2
_a54 = p(2, R(1, 2)) / 4 - _a52
HOCHOST4 = ExponentialTableau(  # Hochbruck & Ostermann 2005, SINUM 43:1069, eq. (5.19)
    A=((0, 0, 0, 0, 0),
       (p(1, R(1, 2)) / 2, 0, 0, 0, 0),
       (p(1, R(1, 2)) / 2 - p(2, R(1, 2)), p(2, R(1, 2)), 0, 0, 0),
       (p(1) - 2 * p(2), p(2), p(2), 0, 0),
       (p(1, R(1, 2)) / 2 - 2 * _a52 - _a54, _a52, _a52, _a54, 0)),
    b=(_b1, 0, 0, _b4, 4 * p(2) - 8 * p(3)), c=(0, R(1, 2), R(1, 2), 1, R(1, 2)), order=4, stiff_order=4,
    name="HochOst4",
)

# ------------------------------------------------ exponential Rosenbrock (exact Jacobian, methods.md §1.5)
EXPRB32 = ExpRosenbrockTableau(  # Hochbruck, Ostermann & Schweitzer 2009, SINUM 47:786, §5.1 (exprb32)
    A=((0, 0), (0, 0)), b=(0, 2 * p(3)), c=(0, 1), order=3, bhat=(0, 0), embedded_order=2, name="Exprb32",
)

EXPRB43 = ExpRosenbrockTableau(  # Hochbruck, Ostermann & Schweitzer 2009, §5.2 (exprb43)
    A=((0, 0, 0), (0, 0, 0), (0, p(1), 0)),
    b=(0, 16 * p(3) - 48 * p(4), -2 * p(3) + 12 * p(4)), c=(0, R(1, 2), 1), order=4,
    bhat=(0, 16 * p(3), -2 * p(3)), embedded_order=3, name="Exprb43",
)


# ------------------------------------------------------- exponential multistep (methods.md §1.6)
ETD2 = AdamsTableau(  # Cox & Matthews 2002, eq. (6) for constant steps; variable-step weights derived
    # started by ETDRK2, whose embedded exponential Euler step estimates the startup (ETD1 had no estimate)
    steps=2, weights=derive.etd_adams_weights(2), startup=ETDRK2, order=2, stiff_order=2, name="ETD2",
)

ETD_ADAMS3 = AdamsTableau(  # exact integration of the quadratic Newton interpolant [derived]
    steps=3, weights=derive.etd_adams_weights(3), startup=ETDRK3, order=3, stiff_order=3, name="ETDAdams3",
)

# ------------------------------------------------------------------ Rosenbrock-W (methods.md §4.4)
_d = 1 / (2 + sp.sqrt(2))
_e32 = 6 + sp.sqrt(2)
ROSENBROCK23 = RosenbrockTableau(  # Shampine & Reichelt 1997, SISC 18:1, §4.1 (ode23s) in classic form:
    # y+ = y + k2 (W-order 2); stage 3 at (t + h, y+) gives the companion y + (k1 + 4k2 + k3)/6
    # (Rosenbrock order 3 with the exact Jacobian, W-order 2), err = (k1 − 2k2 + k3)/6
    alpha=((0, 0, 0), (R(1, 2), 0, 0), (0, 1, 0)),
    gamma=((_d, 0, 0), (-_d, _d, 0), (_d * (_e32 - 2), -_d * _e32, _d)),
    b=(0, 1, 0), bhat=(R(1, 6), R(2, 3), R(1, 6)), order=2, embedded_order=2, name="Rosenbrock23",
)

ROS34PW2 = RosenbrockTableau(  # Rang & Angermann 2005, BIT 45:761 (PETSc rosw.c TSROSWRA34PW2)
    alpha=((0, 0, 0, 0),
           (F("8.7173304301691801e-01"), 0, 0, 0),
           (F("8.4457060015369423e-01"), F("-1.1299064236484185e-01"), 0, 0),
           (0, 0, 1, 0)),
    gamma=((F("4.3586652150845900e-01"), 0, 0, 0),
           (F("-8.7173304301691801e-01"), F("4.3586652150845900e-01"), 0, 0),
           (F("-9.0338057013044082e-01"), F("5.4180672388095326e-02"), F("4.3586652150845900e-01"), 0),
           (F("2.4212380706095346e-01"), F("-1.2232505839045147"), F("5.4526025533510214e-01"),
            F("4.3586652150845900e-01"))),
    b=(F("2.4212380706095346e-01"), F("-1.2232505839045147"), F("1.5452602553351020"), F("4.3586652150845900e-01")),
    bhat=(F("3.7810903145819369e-01"), F("-9.6042292212423178e-02"), F("0.5"), F("2.1793326075422950e-01")),
    order=3, embedded_order=2, name="ROS34PW2",
)

ROS34PW3 = RosenbrockTableau(  # Rang & Angermann 2005 (from OrdinaryDiffEq's ROS34PW3RodasTableau, methods.md §4.4)
    alpha=((0, 0, 0, 0),
           (F("2.5155456020628817"), 0, 0, 0),
           (F("0.5077728010314415"), F("0.75"), 0, 0),
           (F("0.1395908140427724"), F("-0.3311100106541934"), F("0.8204055971271418"), 0)),
    gamma=((F("1.0685790213016289"), 0, 0, 0),
           (F("-2.5155456020628817"), F("1.0685790213016289"), 0, 0),
           (F("-0.8799133921710653"), F("-0.9601418776619070"), F("1.0685790213016289"), 0),
           (F("-0.4173138937944877"), F("0.4109104703585771"), F("-1.3558873204765276"), F("1.0685790213016289"))),
    b=(F("0.22047681286931822"), F("0.0027828278331186"), F("0.00718447876351395"), F("0.7695558805340499")),
    bhat=(F("0.3130029728520967"), F("-0.289468952451127"), F("0.97646597959903"), 0),
    order=3, embedded_order=2, rosenbrock_order=4, name="ROS34PW3",
)

# ----------------------------------------------------- RK-TASE and MSRKTASE, W = L (methods.md §3)
TASE_RK2 = derive.tase_rk(2)     # midpoint, α = (3, 3/2) (Bassenne, Fu & Mani 2021)
TASE_RK3 = derive.tase_rk(3)     # Ralston-3, α of Calvo, Montijano & Rández 2021
TASE_RK4 = derive.tase_rk(4)     # RK4, α of Calvo, Montijano & Rández 2021
MSRKTASE2 = derive.msrktase(2)   # derived from the W-conditions (Calvo, Montijano & Rández 2025)
MSRKTASE3 = derive.msrktase(3)

# ------------------------------------------------------------------------ SRA (methods.md §5.3)
SRA1 = SRATableau(  # Rößler 2010, SINUM 48:922, Table 5.1 (StochasticDiffEq tableaus.jl; diffrax sra1.py)
    A0=((0, 0), (R(3, 4), 0)), B0=((0, 0), (R(3, 2), 0)), alpha=(R(1, 3), R(2, 3)), beta1=(1, 0), beta2=(-1, 1),
    c0=(0, R(3, 4)), c1=(1, 0), order=2, name="SRA1", alpha_hat=(1, 0),
)

SRA3 = SRATableau(  # Rößler 2010, Table 5.2 (StochasticDiffEq tableaus.jl)
    A0=((0, 0, 0), (1, 0, 0), (R(1, 4), R(1, 4), 0)), B0=((0, 0, 0), (0, 0, 0), (1, R(1, 2), 0)),
    alpha=(R(1, 6), R(1, 6), R(2, 3)), beta1=(1, 0, 0), beta2=(-1, 1, 0), c0=(0, 1, R(1, 2)), c1=(1, 0, 0),
    order=3, name="SRA3", alpha_hat=(1, 0, 0),
)

SOSRA = SRATableau(  # Rackauckas & Nie, arXiv:1804.04344 (StochasticDiffEq tableaus.jl)
    A0=((0, 0, 0), (F("0.6923962376159507"), 0, 0), (F("-3.1609142252828395"), F("4.1609142252828395"), 0)),
    B0=((0, 0, 0), (F("1.3371632704399763"), 0, 0), (F("1.442371048468624"), F("1.8632741501139225"), 0)),
    alpha=(F("0.2889874966892885"), F("0.6859880440839937"), F("0.025024459226717772")),
    beta1=(F("-16.792534242221663"), F("17.514995785380226"), F("0.27753845684143835")),
    beta2=(F("0.4237535769069274"), F("0.6010381474428539"), F("-1.0247917243497813")),
    c0=(0, F("0.6923962376159507"), 1), c1=(0, F("0.041248171110700504"), 1), order=2, name="SOSRA",
    alpha_hat=(1, 0, 0),
)
