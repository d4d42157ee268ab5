"""``quantpanel archive``: old ticks out of SQLite into Parquet day files, read back transparently."""

from __future__ import annotations

import argparse
import json
import time
from datetime import UTC, datetime

from quantpanel.config import load_config
from quantpanel.errors import StoreError

__all__ = ["run_archive"]


def run_archive(args: argparse.Namespace) -> int:
    """One JSON line per symbol-day archived, then a summary line (``message`` says why when
    there was nothing to do)."""
    from quantpanel.storage.archive import archive_cutoff
    from quantpanel.storage.store import Store

    cfg = load_config(args.config, {"storage.db_path": args.db, "storage.archive_dir": args.archive_dir})
    days = args.older_than_days if args.older_than_days is not None else cfg.storage.archive_after_days
    db, root = cfg.storage.db_path, cfg.storage.archive_dir
    summary: dict[str, object] = {"db": str(db), "archive_dir": str(root), "older_than_days": days}
    if not days:
        print(json.dumps(summary | {"archived_days": 0, "ticks": 0, "message": (
            "archiving is off (storage.archive_after_days is 0 or null); pass --older-than-days N")}))
        return 0
    if not db.is_file():
        raise StoreError(f"{db}: no such database")
    now = int(time.time() * 1000)
    before = datetime.fromtimestamp(archive_cutoff(now, days) / 1000, tz=UTC).strftime("%Y-%m-%d")
    n_days = n_ticks = n_bytes = 0
    t0 = time.perf_counter()
    with Store(db) as store:
        for d in store.archive_ticks(root, older_than_days=days, now_ms=now):
            print(json.dumps({"symbol": d.symbol, "day": d.day, "ticks": d.ticks, "moved": d.moved,
                              "file": str(d.file), "bytes": d.bytes}), flush=True)
            n_days, n_ticks, n_bytes = n_days + 1, n_ticks + d.moved, n_bytes + d.bytes
    summary |= {"before": before, "archived_days": n_days, "ticks": n_ticks, "bytes": n_bytes,
                "seconds": round(time.perf_counter() - t0, 3)}
    if not n_days:
        summary["message"] = (f"nothing to archive: {db} holds no ticks of a UTC day before {before} "
                              f"(older than {days} days)")
    print(json.dumps(summary))
    return 0
