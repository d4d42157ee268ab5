"""The push bench's probe: simulated trades whose prices identify them (labelled simulated), and
an observer that notes when each is on the exchange's wire."""

from __future__ import annotations

import asyncio
import re
import threading
import time
from pathlib import Path

import orjson

__all__ = ["PROBE_BASE", "probe_price", "parse_shown_price", "write_probe_capture", "Observer"]

PROBE_BASE = 10_000.0
_SHOWN = re.compile(r"&gt;([-\d,.]+)&lt;/div&gt;\s*$")


def probe_price(k: int) -> str:
    """The k-th probe trade's price: unique for 100,000 trades, shown whole by the dashboard's
    price card (6 significant digits)."""
    return f"{PROBE_BASE + (k % 100_000) / 10:.1f}"


def parse_shown_price(text: str) -> int | None:
    """The probe index behind a price card's HTML (None when it shows no probe price)."""
    m = _SHOWN.search(text)
    if not m:
        return None
    try:
        p = float(m.group(1).replace(",", ""))
    except ValueError:
        return None
    k = round((p - PROBE_BASE) * 10)
    return k if 0 <= k < 100_000 else None


def write_probe_capture(path: Path, seconds: float, rate_hz: float) -> int:
    """A JSON-lines capture of simulated trades: BTCUSDT carries the probe prices, ETHUSDT a
    random walk, each ``rate_hz`` trades per second."""
    import random

    rnd = random.Random(7)
    t0, step = 1_700_000_000_000, 1000.0 / rate_hz
    eth = 2000.0
    n = int(seconds * rate_hz)
    with open(path, "w") as fh:
        for k in range(n):
            t = int(t0 + k * step)
            eth += rnd.choice((-0.01, 0.01))
            for sym, price in (("BTCUSDT", probe_price(k)), ("ETHUSDT", f"{eth:.2f}")):
                data = {"e": "aggTrade", "E": t, "s": sym, "a": k + 1, "p": price, "q": "0.010",
                        "f": k + 1, "l": k + 1, "T": t, "m": bool(k & 1)}
                fh.write(orjson.dumps({"stream": f"{sym.lower()}@aggTrade", "data": data}).decode() + "\n")
    return 2 * n


# -- the observer ---------------------------------------------------------------------------------
class Observer:
    """A bare websockets client on the exchange: when each probe trade was on the wire."""

    def __init__(self, url: str) -> None:
        self.url = url + "?streams=btcusdt@aggTrade"
        self.received: dict[int, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._run()), daemon=True)
        self._thread.start()

    async def _run(self) -> None:
        from websockets.asyncio.client import connect

        async with connect(self.url, compression=None) as ws:
            while not self._stop.is_set():
                try:
                    frame = await asyncio.wait_for(ws.recv(), 0.5)
                except TimeoutError:
                    continue
                now = time.time()
                k = round((float(orjson.loads(frame)["data"]["p"]) - PROBE_BASE) * 10)
                self.received.setdefault(k, now)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)
