"""``quantpanel serve``, and the options ``panel serve app.py --args ...`` takes: one dashboard
server, configured the same way however it is started."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from quantpanel.config import Config, load_config

__all__ = ["app_options", "run_serve", "websocket_max_message_bytes"]


def websocket_max_message_bytes(cfg: Config) -> int:
    """The server's websocket message cap: an upload travels base64-encoded in one message, so
    let ``storage.max_upload_mb`` through (never below Bokeh's default, 20 MiB)."""
    return max(20 * 2**20, int(cfg.storage.max_upload_mb * 2**20 * 4 / 3) + 2**20)


def run_serve(args: argparse.Namespace) -> int:
    """Serve the dashboard; ingestion starts with the server, before any browser connects."""
    import panel as pn

    from quantpanel.dashboard.app import create_app
    from quantpanel.dashboard.hub import get_hub

    cfg = load_config(args.config, {
        "server.host": args.host, "server.port": args.port, "source": args.source,
        "feed.ws_url": args.ws_url, "replay.speed": args.speed,
        "server.allow_websocket_origin": args.allow_websocket_origin, **_db_dir(args.db_dir),
    })
    origins = list(cfg.server.allow_websocket_origin) or [
        f"{h}:{cfg.server.port}" for h in ("localhost", "127.0.0.1", cfg.server.host)]
    print(f"quantpanel serving on http://{cfg.server.host}:{cfg.server.port} "
          f"(source {cfg.source})", flush=True)
    max_message = websocket_max_message_bytes(cfg)
    server = pn.serve(lambda: create_app(cfg), address=cfg.server.host, port=cfg.server.port,
                      websocket_origin=origins, show=False, title="quantpanel",
                      websocket_max_message_size=max_message, start=False)
    # ingestion starts with the server (it records with no browser open), not with the first tab
    server.io_loop.add_callback(lambda: get_hub(cfg))
    server.start()
    try:
        server.io_loop.start()
    except KeyboardInterrupt:
        print("quantpanel stopped", flush=True)
    return 0


def app_options(argv: Sequence[str] | None = None) -> tuple[Config, str | None]:
    """Options of ``panel serve app.py --args ...`` (and QUANTPANEL_* environment variables)."""
    import os

    p = argparse.ArgumentParser(prog="app.py", add_help=False)
    p.add_argument("--config")
    p.add_argument("--source", choices=["auto", "live", "replay"])
    p.add_argument("--db-dir")
    ns, _ = p.parse_known_args(sys.argv[1:] if argv is None else argv)
    source = ns.source or os.environ.get("QUANTPANEL_SOURCE") or None
    return load_config(ns.config, {"source": source, **_db_dir(ns.db_dir)}), source


def _db_dir(directory: str | None) -> dict[str, str]:
    """``--db-dir D``: both databases in D (a container's volume)."""
    if not directory:
        return {}
    return {"storage.db_path": str(Path(directory) / "quantpanel.db"),
            "storage.replay_db_path": str(Path(directory) / "replay.db")}
