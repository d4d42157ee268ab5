"""Two interpreter settings a long-running process runs with, set once by its entry point:
``quantpanel serve`` before it serves, ``quantpanel ingest`` and ``record`` before they start,
``app.py`` (``panel serve``) in its first session before it builds the page. Never by the library
itself: a notebook's kernel keeps its own heap and switch interval.

Measured on the bench's ingest (parse -> bars -> pairs -> store writer thread, 2 cores):

- **The startup heap is frozen** (``gc.collect()`` then ``gc.freeze()``). A full collection
  walks every tracked object; the ingest allocates a Tick per trade, so full collections come
  every second or so, and each walked the whole long-lived heap (modules, Bokeh models, loaded
  history): 0.28 of 1.39 s of the loop went to two of them. Frozen objects are never walked again;
  what the process builds later is collected as before.
- **The GIL switch interval is 1 ms**, not 5. The store writer thread gives up the GIL for every
  SQLite statement and must take it back from the busy event loop after each one: at 5 ms a
  writer wrote nothing at all while the loop ran for 1.1 s (everything waited for the final
  flush); at 1 ms it keeps pace (ingest 0.42 -> 0.64 of the SQLite-only rate). A thread asks for
  the GIL only when it has work, so an idle writer costs the loop nothing.
"""

from __future__ import annotations

import gc
import logging
import sys
import time

__all__ = ["SWITCH_INTERVAL_S", "tune_interpreter"]

log = logging.getLogger(__name__)
SWITCH_INTERVAL_S = 0.001
_tuned = False


def tune_interpreter() -> None:
    """Freeze the heap built so far and shorten the switch interval; once per process (a second
    freeze would pin whatever garbage exists by then for the rest of the process)."""
    global _tuned
    if _tuned:
        return
    _tuned = True
    t0 = time.perf_counter()
    gc.collect()
    gc.freeze()
    sys.setswitchinterval(SWITCH_INTERVAL_S)
    log.info("interpreter tuned: %d objects frozen in %.2f s, switch interval %.0f ms",
             gc.get_freeze_count(), time.perf_counter() - t0, SWITCH_INTERVAL_S * 1000)
