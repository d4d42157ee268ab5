"""The interpreter settings an ingesting process starts with (pipeline/interpreter.py)."""

from __future__ import annotations

import subprocess
import sys

_PROBE = """
import gc, sys
from quantpanel.pipeline.interpreter import SWITCH_INTERVAL_S, tune_interpreter
assert gc.get_freeze_count() == 0 and sys.getswitchinterval() == 0.005
junk = [[i] for i in range(50_000)]
tune_interpreter()
frozen = gc.get_freeze_count()
assert frozen >= 50_000, frozen
assert sys.getswitchinterval() == SWITCH_INTERVAL_S
more = [[i] for i in range(1_000)]
tune_interpreter()  # once per process: nothing more is frozen
assert gc.get_freeze_count() == frozen
gc.collect()
assert gc.is_tracked(more[0]) and more[0] in gc.get_objects()  # later objects are collected as before
print("ok")
"""


def test_ingest_tuning_freezes_the_startup_heap_and_shortens_the_switch_interval_once():
    # its own interpreter: the settings are process-wide
    out = subprocess.run([sys.executable, "-c", _PROBE], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"


def test_a_started_ingestion_tunes_its_process(tmp_path):
    probe = f"""
import asyncio, gc, sys
from quantpanel.config import load_config
from quantpanel.pipeline.ingestion import build_ingestion
async def main():
    cfg = load_config(None, {{}})
    ing = build_ingestion(cfg, {str(tmp_path / 'q.db')!r}, ws_url="ws://127.0.0.1:9/ws")
    ing.start()
    assert gc.get_freeze_count() > 0 and sys.getswitchinterval() == 0.001
    await ing.stop(drain_s=1)
asyncio.run(main())
print("ok")
"""
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().endswith("ok")
