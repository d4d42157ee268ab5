"""``quantpanel serve``, and the options ``panel serve app.py --args ...`` takes: one dashboard
server, configured the same way however it is started."""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
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
    """Serve the dashboard; ingestion starts with the server, before any browser connects.

    ``--broker URL``: no feed here, the hub follows ``quantpanel ingest --broker URL``.
    ``--workers N``: a private redis-server, one ingest process and N dashboard processes on one
    port (Bokeh forks them after binding it; one that dies is restarted), all stopped by Ctrl-C.
    """
    cfg = load_config(args.config, {
        "server.host": args.host, "server.port": args.port, "source": args.source,
        "feed.ws_url": args.ws_url, "replay.speed": args.speed, "broker.url": args.broker,
        "server.allow_websocket_origin": args.allow_websocket_origin, **_db_dir(args.db_dir)})
    if not args.workers:
        return _serve(cfg, num_procs=1)
    from quantpanel.broker.local import LocalRedis, die_with_parent

    parent = os.getpid()
    redis = None if cfg.broker.url else LocalRedis().start(owned=True)
    url = cfg.broker.url or (redis.url if redis else "")
    ingest = subprocess.Popen([sys.executable, "-m", "quantpanel.cli", "ingest", "--broker", url,
                               *_passed(args, "config", "source", "ws_url", "speed", "db_dir")],
                              preexec_fn=die_with_parent)
    signal.signal(signal.SIGTERM, _exit)  # `kill`, docker stop: stop the others, as Ctrl-C does
    try:
        return _serve(cfg.model_copy(update={"broker": cfg.broker.model_copy(update={"url": url})}),
                      num_procs=args.workers)
    finally:
        if os.getpid() == parent:  # the forked dashboard processes run this too: only the parent stops them
            ingest.terminate()
            try:
                ingest.wait(30)
            except subprocess.TimeoutExpired:
                ingest.kill()
            if redis is not None:
                redis.close()


def _exit(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


def _passed(args: argparse.Namespace, *names: str) -> list[str]:
    """The flags given to ``serve`` that ``ingest`` takes too, as its command line."""
    out: list[str] = []
    for name in names:
        value = getattr(args, name, None)
        if value is not None:
            out += [f"--{name.replace('_', '-')}", str(value)]
    return out


def _serve(cfg: Config, *, num_procs: int) -> int:
    import panel as pn

    from quantpanel.dashboard.app import create_app
    from quantpanel.dashboard.hub import get_hub
    from quantpanel.pipeline.interpreter import tune_interpreter

    origins = list(cfg.server.allow_websocket_origin) or [
        f"{h}:{cfg.server.port}" for h in ("localhost", "127.0.0.1", cfg.server.host)]
    where = f"broker {cfg.broker.url}" if cfg.broker.url else f"source {cfg.source}"
    procs = f", {num_procs} processes" if num_procs > 1 else ""
    print(f"quantpanel serving on http://{cfg.server.host}:{cfg.server.port} ({where}{procs})", flush=True)
    max_message = websocket_max_message_bytes(cfg)
    server = pn.serve(lambda: create_app(cfg), address=cfg.server.host, port=cfg.server.port,
                      websocket_origin=origins, show=False, title="quantpanel",
                      websocket_max_message_size=max_message, start=False, num_procs=num_procs)
    if num_procs > 1:  # a forked dashboard process: it goes when `serve --workers` goes, however
        from quantpanel.broker.local import die_with_parent
        die_with_parent()
    tune_interpreter()  # a long-running server process, before any session (pipeline/interpreter.py)
    # ingestion starts with the server (it records with no browser open), not with the first tab;
    # with num_procs > 1 this runs in each forked process, on its own loop
    server.io_loop.add_callback(lambda: get_hub(cfg))
    server.start()
    try:
        server.io_loop.start()
    except KeyboardInterrupt:
        print("quantpanel stopped", flush=True)
    return 0


def app_options(argv: Sequence[str] | None = None) -> tuple[Config, str | None]:
    """Options of ``panel serve app.py --args ...`` (and QUANTPANEL_* environment variables)."""

    p = argparse.ArgumentParser(prog="app.py", add_help=False)
    p.add_argument("--config")
    p.add_argument("--source", choices=["auto", "live", "replay"])
    p.add_argument("--db-dir")
    p.add_argument("--broker")
    ns, _ = p.parse_known_args(sys.argv[1:] if argv is None else argv)
    source = ns.source or os.environ.get("QUANTPANEL_SOURCE") or None
    broker = ns.broker or os.environ.get("QUANTPANEL_BROKER") or None
    return load_config(ns.config, {"source": source, "broker.url": broker, **_db_dir(ns.db_dir)}), source


def _db_dir(directory: str | None) -> dict[str, str]:
    """``--db-dir D``: both databases in D (a container's volume)."""
    if not directory:
        return {}
    return {"storage.db_path": str(Path(directory) / "quantpanel.db"),
            "storage.replay_db_path": str(Path(directory) / "replay.db")}
