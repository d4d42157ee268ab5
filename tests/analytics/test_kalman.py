"""The Kalman hedge ratio equals pykalman's filter on real data, and the batch and online paths agree
bit for bit."""

from __future__ import annotations

from decimal import Decimal, localcontext

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from numpy.testing import assert_allclose
from pykalman import KalmanFilter

import quantpanel.analytics as qa
from quantpanel.errors import AnalyticsInputError, InsufficientDataError

from tests.analytics.test_pair_reference import futures_pair, klines  # noqa: F401 (fixture)

RTOL = 1e-8  # ANALYTICS.md: equal to pykalman's filter to 1e-8 relative


@pytest.fixture(scope="module")
def depeg_full() -> tuple[np.ndarray, np.ndarray]:
    """Real Binance.US 1m closes, BTCUSDT (y) vs BTCUSD (x), 2023-03-01..21 (30k bars)."""
    y, x = qa.align(klines("BTCUSDT"), klines("BTCUSD"))
    return y.to_numpy(), x.to_numpy()


@pytest.fixture(scope="module")
def futures(futures_pair) -> tuple[np.ndarray, np.ndarray]:  # noqa: F811
    """Real Binance USD-M 1s closes, ETHUSDT (y) vs BTCUSDT (x), 344 bars."""
    y, x = futures_pair
    return y.to_numpy(), x.to_numpy()


def pykalman_filter(y, x, delta, ve):
    vw = delta / (1 - delta)
    kf = KalmanFilter(
        transition_matrices=np.eye(2),
        observation_matrices=np.stack([x, np.ones_like(x)], axis=1)[:, None, :],  # (n, 1, 2)
        transition_covariance=vw * np.eye(2),
        observation_covariance=[[ve]],
        initial_state_mean=[0.0, 0.0],
        initial_state_covariance=np.eye(2),
    )
    return kf.filter(y[:, None])


def predicted_from_filtered(mean, cov, x, y, delta, ve):
    """e_t and Q_t from pykalman's filtered moments: with the identity transition the prior of bar t
    is the posterior of bar t-1 plus Vw*I, and the prior of bar 0 is the initial state itself."""
    vw = delta / (1 - delta)
    prior_mean = np.vstack([[0.0, 0.0], mean[:-1]])
    prior_cov = np.concatenate([np.eye(2)[None], cov[:-1] + vw * np.eye(2)])
    h = np.stack([x, np.ones_like(x)], axis=1)
    e = y - (h * prior_mean).sum(axis=1)
    q = np.einsum("ti,tij,tj->t", h, prior_cov, h) + ve
    return e, q


CASES = [  # (pair, bars, delta, ve)
    ("depeg", 5000, 1e-4, 1e-3),  # pykalman runs at ~110 us/bar: 5k bars keep it near 1 s
    ("futures", None, 1e-4, 1e-3),
    ("futures", None, 1e-7, 1e-2),
    ("futures", None, 0.1, 10.0),
]


@pytest.fixture(scope="module", params=CASES, ids=lambda c: f"{c[0]}-d{c[2]:g}-ve{c[3]:g}")
def vs_pykalman(request, depeg_full, futures):
    name, bars, delta, ve = request.param
    y, x = (depeg_full if name == "depeg" else futures)
    y, x = y[:bars], x[:bars]
    mean, cov = pykalman_filter(y, x, delta, ve)
    return y, x, delta, ve, mean, cov, qa.kalman_hedge(y, x, delta=delta, ve=ve)


def test_filtered_state_equals_pykalman(vs_pykalman):
    _, _, delta, ve, mean, cov, r = vs_pykalman
    # No atol: alpha stays >= 4e-9 in absolute value on these series (it crosses zero only between
    # bars), and the largest relative difference seen is 2e-10 (beta: 2e-16).
    assert_allclose(r.beta, mean[:, 0], rtol=RTOL, atol=0)
    assert_allclose(r.alpha, mean[:, 1], rtol=RTOL, atol=0)
    assert (r.delta, r.ve) == (delta, ve)
    # the state carried to the next bar is pykalman's posterior plus Vw*I (its predict step)
    vw = delta / (1 - delta)
    s = r.state
    assert_allclose([s.beta, s.alpha], mean[-1], rtol=RTOL)
    assert_allclose([[s.var_beta, s.cov_beta_alpha], [s.cov_beta_alpha, s.var_alpha]],
                    cov[-1] + vw * np.eye(2), rtol=1e-6)


def test_innovation_and_its_variance_equal_pykalman_predicted_state(vs_pykalman):
    y, x, delta, ve, mean, cov, r = vs_pykalman
    e, q = predicted_from_filtered(mean, cov, x, y, delta, ve)
    # e_t = y_t - prediction, both of size |y|: near e = 0 only an absolute tolerance makes sense.
    # 1e-12 * |y| is ~1e4 ulps of y (the largest difference seen is 2e-16 * |y|).
    atol_e = 1e-12 * np.abs(y).max()
    assert_allclose(r.innovation, e, rtol=RTOL, atol=atol_e)
    assert_allclose(r.innovation_var, q, rtol=RTOL)  # Q >= ve > 0: relative is fine
    assert_allclose(r.zscore, e / np.sqrt(q), rtol=RTOL, atol=atol_e / np.sqrt(q.min()))
    assert np.array_equal(r.zscore, r.innovation / np.sqrt(r.innovation_var))


def exact_reference(y, x, delta, ve):
    """The textbook recursion (P - K h P) in 80-digit decimal arithmetic."""
    with localcontext() as ctx:
        ctx.prec = 80
        ve_, vw = Decimal(ve), Decimal(delta) / (1 - Decimal(delta))
        m0 = m1 = b = Decimal(0)
        a = c = Decimal(1)
        out = []
        for t, (yt, xt) in enumerate(zip(map(Decimal, y.tolist()), map(Decimal, x.tolist()), strict=True)):
            if t:
                a, c = a + vw, c + vw
            g0, g1 = a * xt + b, b * xt + c
            q = xt * g0 + g1 + ve_
            e = yt - (xt * m0 + m1)
            m0, m1 = m0 + g0 / q * e, m1 + g1 / q * e
            a, b, c = a - g0 * g0 / q, b - g0 * g1 / q, c - g1 * g1 / q
            out.append([float(m0), float(m1), float(q)])
    return np.array(out)


def test_equals_80_digit_reference_where_p_minus_khp_loses_digits(futures):
    # With a very slow state (delta 1e-12) and x ~ 62,000, P is so close to singular that the
    # textbook P - K h P (pykalman's form) loses 5 digits of alpha and Q (1.9e-5 and 1e-5 off the
    # 80-digit reference); the cancellation-free update stays at 1e-9 for alpha, 1e-15 for Q.
    y, x = futures
    ref = exact_reference(y, x, 1e-12, 1e-3)
    r = qa.kalman_hedge(y, x, delta=1e-12, ve=1e-3)
    assert_allclose(r.beta, ref[:, 0], rtol=1e-14)
    assert_allclose(r.alpha, ref[:, 1], rtol=RTOL)  # alpha ~ 1e-6: e_t's rounding dominates
    assert_allclose(r.innovation_var, ref[:, 2], rtol=1e-14)


def test_first_bar_uses_the_initial_state_as_its_prior():
    # pykalman's convention: [0, 0] and I are theta_{0|-1}; no transition before the first bar, so
    # Q_0 = x^2 + 1 + ve (not x^2 (1 + Vw) + 1 + Vw + ve).
    y, x, ve = 101.0, 100.0, 1e-3
    r = qa.kalman_hedge([y], [x], delta=0.5, ve=ve)
    q = x * x + 1 + ve
    assert r.innovation_var[0] == q
    assert_allclose([r.beta[0], r.alpha[0], r.innovation[0]], [x * y / q, y / q, y], rtol=1e-15)


def test_tends_to_ridge_and_ols_as_delta_goes_to_zero(depeg_full, futures):
    """delta -> 0 is recursive least squares with the N(0, I) prior: the final state is the ridge
    regression (X'X + ve I)^-1 X'y over all bars, which is OLS when the data outweigh the prior."""
    ve = 1e-3
    for y, x in (depeg_full, futures):
        delta = 1e-30
        xc = x - x.mean()
        # the random walk adds n*Vw to beta's variance; it must be negligible next to what the data
        # leave (~ve/Sxx), or the filter is still tracking (delta = 1e-20 is not small enough here)
        assert len(x) * delta < 1e-9 * ve / (xc @ xc)
        r = qa.kalman_hedge(y, x, delta=delta, ve=ve)
        X = np.stack([x, np.ones_like(x)], axis=1)
        ridge = np.linalg.lstsq(np.vstack([X, np.sqrt(ve) * np.eye(2)]), np.r_[y, 0.0, 0.0],
                                rcond=None)[0]
        assert_allclose(r.beta[-1], ridge[0], rtol=1e-10)  # seen: 2e-14 (depeg), 8e-12 (futures)
        assert_allclose(r.alpha[-1], ridge[1], rtol=1e-9)  # seen: 4e-12, 3e-11

    y, x = depeg_full
    h = qa.ols_hedge(y, x)
    r = qa.kalman_hedge(y, x, delta=1e-30, ve=ve)
    # Ridge minus OLS is exactly -ve (X'X + ve I)^-1 theta_ols: the prior's pull on beta is 7e-9
    # relative over three weeks of BTC prices (the smallest eigenvalue of X'X is ~325 >> ve), so
    # 1e-7 bounds it with room for rounding. (On the 5.7-minute futures pair BTC barely moves,
    # that eigenvalue is 3e-4 < ve, the prior dominates and the limit is ridge, not OLS.)
    X = np.stack([x, np.ones_like(x)], axis=1)
    pull = -ve * np.linalg.solve(X.T @ X + ve * np.eye(2), [h.beta, h.alpha])
    assert abs(pull[0]) < 1e-8 * abs(h.beta)
    assert_allclose(r.beta[-1], h.beta, rtol=1e-7)


def steps(y, x, state):
    points = []
    for yt, xt in zip(y, x, strict=True):
        state, p = qa.kalman_step(state, yt, xt)
        points.append(p)
    return state, points


@pytest.mark.parametrize("params", [{}, {"delta": 1e-7, "ve": 1e-2}, {"delta": 0.3, "ve": 50.0}])
def test_repeated_step_equals_batch_bit_for_bit(depeg_full, futures, params):
    for y, x in ((depeg_full[0][:3000], depeg_full[1][:3000]), futures):
        r = qa.kalman_hedge(y, x, **params)
        state, points = steps(y, x, qa.kalman_initial(**params))
        for field in ("beta", "alpha", "innovation", "innovation_var", "zscore"):
            assert np.array_equal(getattr(r, field), [getattr(p, field) for p in points]), field
        assert state == r.state
        # warm up in batch, then go on bar by bar: the same numbers as one batch over everything
        k = len(y) // 2
        head = qa.kalman_hedge(y[:k], x[:k], **params)
        state2, rest = steps(y[k:], x[k:], head.state)
        assert state2 == r.state
        assert np.array_equal(r.zscore[k:], [p.zscore for p in rest])


finite = st.floats(allow_nan=False, allow_infinity=False)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(finite, finite), max_size=25),
       st.floats(0, 1, exclude_min=True, exclude_max=True),
       st.floats(0, exclude_min=True, allow_infinity=False))
def test_any_finite_input_raises_only_documented_errors(rows, delta, ve):
    """Any finite floats, even near the float64 limits: no exception but the documented ones,
    Q >= ve wherever it is a number, and batch and step agree (NaN included)."""
    y = np.array([r[0] for r in rows])
    x = np.array([r[1] for r in rows])
    try:
        r = qa.kalman_hedge(y, x, delta=delta, ve=ve)
    except InsufficientDataError as e:
        assert len(rows) == 0 and e.needed == 1
        return
    assert all(len(a) == len(rows) for a in (r.beta, r.alpha, r.innovation, r.innovation_var,
                                             r.zscore))
    q, e = r.innovation_var, r.innovation
    known = ~np.isnan(q)
    assert (q[known] >= ve).all()
    ok = known & np.isfinite(e) & np.isfinite(q)
    with np.errstate(over="ignore"):
        assert np.array_equal(r.zscore[ok], e[ok] / np.sqrt(q[ok]))
    _, points = steps(y, x, qa.kalman_initial(delta=delta, ve=ve))
    assert np.array_equal(r.beta, [p.beta for p in points], equal_nan=True)
    assert np.array_equal(r.zscore, [p.zscore for p in points], equal_nan=True)


@st.composite
def price_pairs(draw):
    n = draw(st.integers(1, 300))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    scale_y, scale_x = (10.0 ** draw(st.integers(-3, 6)) for _ in range(2))
    kind = draw(st.sampled_from(["cointegrated", "independent", "flat", "flat_runs", "zero_x"]))
    x = scale_x * np.exp(np.cumsum(rng.normal(scale=0.01, size=n)))
    if kind == "cointegrated":
        y = scale_y / scale_x * draw(st.floats(0.1, 5)) * x + scale_y * rng.normal(scale=1e-3, size=n)
    elif kind == "independent":
        y = scale_y * np.exp(np.cumsum(rng.normal(scale=0.01, size=n)))
    elif kind == "flat":
        y, x = np.full(n, scale_y), np.full(n, scale_x)
    elif kind == "flat_runs":  # empty bars carry the close
        y = scale_y * np.repeat(np.exp(np.cumsum(rng.normal(scale=0.01, size=n))), 10)[:n]
        x = np.repeat(x, 10)[:n]
    else:
        y, x = scale_y * rng.normal(size=n), np.zeros(n)
    delta = 10.0 ** draw(st.floats(-12, -0.5))
    ve = 10.0 ** draw(st.floats(-6, 3))
    return y, x, delta, ve


@settings(max_examples=150, deadline=None)
@given(price_pairs())
def test_price_like_input_gives_finite_outputs(case):
    y, x, delta, ve = case
    r = qa.kalman_hedge(y, x, delta=delta, ve=ve)
    for field in ("beta", "alpha", "innovation", "innovation_var", "zscore"):
        assert np.isfinite(getattr(r, field)).all(), field
    assert (r.innovation_var >= ve).all()
    s = r.state
    assert s.var_beta > 0 and s.var_alpha > 0 and s.det >= 0
    assert s.cov_beta_alpha ** 2 <= s.var_beta * s.var_alpha * (1 + 1e-9)  # positive semidefinite


def test_errors_name_the_argument():
    y, x = [1.0, 2.0, 3.0], [1.0, 2.0, 4.0]
    for delta in (0, 1, -0.1, 1.5, float("nan")):
        with pytest.raises(AnalyticsInputError, match=r"delta must be in \(0, 1\), got"):
            qa.kalman_hedge(y, x, delta=delta)
        with pytest.raises(AnalyticsInputError, match=r"delta must be in \(0, 1\)"):
            qa.kalman_initial(delta=delta)
    for ve in (0, -1e-3, float("inf"), float("nan")):
        with pytest.raises(AnalyticsInputError, match="ve must be a positive finite number, got"):
            qa.kalman_hedge(y, x, ve=ve)
    with pytest.raises(AnalyticsInputError, match="delta and ve must be numbers"):
        qa.kalman_hedge(y, x, delta="fast")
    with pytest.raises(AnalyticsInputError, match="y and x differ in length: 3 vs 2"):
        qa.kalman_hedge(y, x[:2])
    with pytest.raises(AnalyticsInputError, match="x has a non-finite value inf at position 1"):
        qa.kalman_hedge(y, [1.0, np.inf, 3.0])
    with pytest.raises(InsufficientDataError,
                       match="Kalman hedge ratio needs at least 1 observations, got 0"):
        qa.kalman_hedge([], [])
    s = qa.kalman_initial()
    with pytest.raises(AnalyticsInputError, match="y must be finite, got nan"):
        qa.kalman_step(s, float("nan"), 1.0)
    with pytest.raises(AnalyticsInputError, match="x must be a number, got 'abc'"):
        qa.kalman_step(s, 1.0, "abc")
    with pytest.raises(AnalyticsInputError, match="state must be a KalmanState"):
        qa.kalman_step((0.0, 0.0), 1.0, 1.0)
    with pytest.raises(TypeError):  # options are keyword-only
        qa.kalman_hedge(y, x, 1e-4)
