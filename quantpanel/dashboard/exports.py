"""Downloads of what a chart shows: CSV always, Parquet where pandas can write it (pyarrow).

One writer for every export, so each file has the same time format (ISO-8601 UTC) and floats
written at full precision (a re-import gives identical numbers).
"""

from __future__ import annotations

import importlib.util
import io
from collections.abc import Callable

import pandas as pd
import panel as pn

from quantpanel.models import TIME_FORMAT

__all__ = ["PARQUET", "to_csv", "to_parquet", "downloads", "rename"]

PARQUET = importlib.util.find_spec("pyarrow") is not None


def to_csv(df: pd.DataFrame) -> io.StringIO:
    buf = io.StringIO()
    df.to_csv(buf, index=False, date_format=TIME_FORMAT)
    buf.seek(0)
    return buf


def to_parquet(df: pd.DataFrame) -> io.BytesIO:
    buf = io.BytesIO()
    df.to_parquet(buf, index=False)
    buf.seek(0)
    return buf


def downloads(frame: Callable[[], pd.DataFrame], stem: str, what: str, *, css: str,
              disabled: bool = False) -> list[pn.widgets.FileDownload]:
    """A CSV download button (and a Parquet one where pandas can write it) of ``frame()``,
    computed at click time. Rename both with ``rename(buttons, stem)``."""
    buttons = [pn.widgets.FileDownload(callback=lambda: to_csv(frame()), filename=f"{stem}.csv",
                                       label=f"Download {what} CSV", embed=False, disabled=disabled,
                                       width=230, css_classes=[css, f"{css}-csv"])]
    if PARQUET:
        buttons.append(pn.widgets.FileDownload(callback=lambda: to_parquet(frame()), filename=f"{stem}.parquet",
                                               label="Parquet", embed=False, disabled=disabled, width=110,
                                               css_classes=[css, f"{css}-parquet"]))
    return buttons


def rename(buttons: list[pn.widgets.FileDownload], stem: str) -> None:
    for b in buttons:
        old = b.filename
        assert old is not None  # downloads() names every button
        b.filename = stem + old[old.rindex("."):]
