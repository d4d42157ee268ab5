"""Pure analytics: numpy/pandas in, frozen results out. No I/O, no UI, no asyncio.

Usable on plain pandas Series in a notebook::

    from quantpanel import analytics as qa
    y, x = qa.align(closes_a, closes_b)
    h = qa.ols_hedge(y, x)
    z = qa.rolling_zscore(qa.spread(y, x, beta=h.beta, alpha=h.alpha), window=60)
"""

from quantpanel.analytics.funding import BarFunding, basis_bps, funding_per_bar, pair_carry, quoted_spread_bps
from quantpanel.analytics.hedge import HedgeResult, ols_hedge
from quantpanel.analytics.kalman import (
    KalmanPoint,
    KalmanResult,
    KalmanState,
    kalman_hedge,
    kalman_initial,
    kalman_step,
)
from quantpanel.analytics.report import REPORT_KEYS, PairReport, pair_report
from quantpanel.analytics.series import pair_series
from quantpanel.analytics.spread import (
    align,
    log_returns,
    rolling_correlation,
    rolling_zscore,
    spread,
    window_correlation,
    window_zscore,
)
from quantpanel.analytics.stationarity import (
    AdfResult,
    CointResult,
    adf,
    engle_granger,
    half_life,
    hurst,
)
from quantpanel.analytics.stats import PriceStats, bars_per_year, price_stats

__all__ = [
    "AdfResult", "BarFunding", "CointResult", "HedgeResult", "KalmanPoint", "KalmanResult", "KalmanState",
    "PairReport", "PriceStats", "REPORT_KEYS",
    "adf", "align", "bars_per_year", "basis_bps", "engle_granger", "funding_per_bar", "half_life", "hurst",
    "kalman_hedge", "kalman_initial", "kalman_step", "log_returns", "ols_hedge", "pair_carry", "pair_report",
    "pair_series", "price_stats", "quoted_spread_bps", "rolling_correlation", "rolling_zscore", "spread",
    "window_correlation", "window_zscore",
]
