"""The interpreter settings an ingesting process starts with (pipeline/interpreter.py)."""

from __future__ import annotations

import subprocess
import sys

from tests.conftest import ROOT

_PROBE = """
import gc, sys, weakref
from quantpanel.pipeline.interpreter import SWITCH_INTERVAL_S, tune_interpreter
assert gc.get_freeze_count() == 0 and sys.getswitchinterval() == 0.005
junk = [[i] for i in range(50_000)]
tune_interpreter()
frozen = gc.get_freeze_count()
assert frozen >= 50_000, frozen
assert sys.getswitchinterval() == SWITCH_INTERVAL_S
tune_interpreter()  # once per process: nothing more is frozen
assert gc.get_freeze_count() == frozen
class Node:
    pass
cycle = Node()
cycle.me = cycle
gone = weakref.ref(cycle)
del cycle
gc.collect()
assert gc.isenabled() and gone() is None  # a cycle made later is collected as before
print("ok")
"""


def test_ingest_tuning_freezes_the_startup_heap_and_shortens_the_switch_interval_once():
    # its own interpreter: the settings are process-wide
    out = subprocess.run([sys.executable, "-c", _PROBE], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"


def test_the_library_leaves_the_interpreter_alone_and_record_tunes_its_process(tmp_path):
    """A started ingestion (as a notebook starts one) freezes nothing; ``quantpanel record``, a
    long-running process, tunes itself before it starts."""
    probe = f"""
import asyncio, gc, sys
from quantpanel.config import load_config
from quantpanel.pipeline.ingestion import build_ingestion
async def main():
    cfg = load_config(None, {{}})
    ing = build_ingestion(cfg, {str(tmp_path / 'q.db')!r}, ws_url="ws://127.0.0.1:9/ws",
                          public_ws_url="ws://127.0.0.1:9/public", spot_ws_url="ws://127.0.0.1:9/spot",
                          rest_url="http://127.0.0.1:9")
    ing.start()
    assert gc.get_freeze_count() == 0 and sys.getswitchinterval() == 0.005
    await ing.stop(drain_s=1)
asyncio.run(main())
print("ok")
"""
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().endswith("ok")
    rec = subprocess.run([sys.executable, "-m", "quantpanel", "record", "--duration", "0.5", "--db", str(tmp_path / "r.db"),
                          "--ws-url", "ws://127.0.0.1:9/ws", "--public-ws-url", "ws://127.0.0.1:9/public",
                          "--rest-url", "http://127.0.0.1:9", "--spot-symbols", ""],  # nothing but loopback
                         capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert "interpreter tuned:" in rec.stderr and "switch interval 1 ms" in rec.stderr, rec.stderr[-2000:]
