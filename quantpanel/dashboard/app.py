"""Build one session's page. ``app.py`` at the repository root calls ``create_app().servable()``."""

from __future__ import annotations

import panel as pn

from quantpanel.config import Config, load_config
from quantpanel.dashboard.hub import get_hub
from quantpanel.dashboard.views import Dashboard

__all__ = ["create_app"]


def create_app(config: Config | None = None, *, source: str | None = None) -> pn.template.BaseTemplate:
    """One session's page, attached to the process's shared hub (started on first use)."""
    pn.extension("tabulator", notifications=True, sizing_mode="stretch_width")
    cfg = config or load_config()
    hub = get_hub(cfg, source=source)
    dash = Dashboard(hub)
    template = pn.template.FastListTemplate(
        title="quantpanel · Binance USD-M Futures",
        sidebar=[pn.pane.Markdown("### Market"), dash.controls],
        main=[dash],
        theme_toggle=False,
    )
    pn.state.onload(dash.start)
    # reachable from tests and notebooks. Set by name, not declared on a subclass: Panel finds a
    # template's CSS and JS by its class name.
    setattr(template, "dashboard", dash)  # noqa: B010
    return template
