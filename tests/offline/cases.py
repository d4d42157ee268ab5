"""OHLC CSV files for the import tests (unit and browser): one good, many bad, each bad one with
the words its message must contain. All synthetic rows are labelled so in their file names."""

from __future__ import annotations

GOOD_HEADER = "time,open,high,low,close,volume\n"


def rows(n: int, start_s: int = 1_700_000_000, step_s: int = 60) -> str:
    out = []
    for i in range(n):
        p = 100 + i
        out.append(f"{start_s + i * step_s},{p},{p + 2},{p - 1},{p + 1},{10 + i}")
    return "\n".join(out) + "\n"


GOOD = ("SIMUSDT-1m-simulated.csv", (GOOD_HEADER + rows(30)).encode())

# (file name, bytes, words the message must contain)
BAD: list[tuple[str, bytes, tuple[str, ...]]] = [
    ("EMPTYUSDT-simulated.csv", b"", ("empty",)),
    ("NOROWSUSDT-simulated.csv", GOOD_HEADER.encode(), ("no rows",)),
    ("MISSUSDT-simulated.csv", ("time,open,high,low,volume\n" + "1,2,3,1,5\n1,2,3,1,5\n").encode(),
     ("missing column", "close")),
    ("TEXTUSDT-simulated.csv", (GOOD_HEADER + rows(3) + "1700000180,101,abc,99,100,1\n").encode(),
     ("line 5", "column high", "not a number")),
    ("HILOUSDT-simulated.csv", (GOOD_HEADER + rows(2) + "1700000120,100,90,95,92,1\n").encode(),
     ("line 4", "high 90 < low 95")),
    ("DUPUSDT-simulated.csv", (GOOD_HEADER + rows(3) + rows(1, 1_700_000_120)).encode(),
     ("line 5", "duplicate time")),
    ("SORTUSDT-simulated.csv", (GOOD_HEADER + rows(3) + rows(1, 1_700_000_000 - 60)).encode(),
     ("line 5", "sorted")),
    ("MIXUSDT-simulated.csv", (GOOD_HEADER + rows(10) + rows(10, 1_700_000_600 + 300, 300)[:-1]
                               + "\n").encode(), ("mixed timeframes",)),
    ("ENCUSDT-simulated.csv", GOOD_HEADER.encode() + "1700000000,1,2,0.5,1,1\n".encode("utf-16"),
     ("not UTF-8",)),
    ("TIMEUSDT-simulated.csv", (GOOD_HEADER + "yesterday,1,2,0.5,1,1\n2024-01-01,1,2,0.5,1,1\n").encode(),
     ("line 2", "column time", "not a time")),
    ("nosymbol-simulated.csv", (GOOD_HEADER + rows(3)).encode(), ("cannot tell the symbol",)),
]


# -- data.binance.vision aggTrades files, built from the real recorded trades (values real) -------
AGG_HEADER = "agg_trade_id,price,quantity,first_trade_id,last_trade_id,transact_time,is_buyer_maker\n"


def agg_trades_csv(ticks: list, *, header: bool = True) -> bytes:
    rows = "".join(f"{t.agg_id},{t.price},{t.qty},{t.agg_id},{t.agg_id},{t.time},"
                   f"{'true' if t.buyer_maker else 'false'}\n" for t in ticks)
    return ((AGG_HEADER if header else "") + rows).encode()


def zipped(name: str, data: bytes) -> bytes:
    import io
    import zipfile

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr(name, data)
    return buf.getvalue()
