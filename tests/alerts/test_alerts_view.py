"""The Alerts panel against a started runtime (no browser): form errors name the field; add,
edit, mute and delete go through the runtime to SQLite and the live engine."""

from __future__ import annotations

import pytest

from quantpanel.alerts.engine import Alert
from quantpanel.dashboard.alerts_view import AlertsView
from quantpanel.dashboard.hub import Hub
from quantpanel.pipeline.runtime import Runtime
from quantpanel.storage.store import Store

from tests.test_pipeline import _config

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
async def hub(tmp_path):
    rt = Runtime(_config(tmp_path, source="replay", **{"alerts.rules": []}))
    hub = Hub(rt, buffer_bars=50)
    await rt.start()
    yield hub
    await rt.stop()


async def test_form_errors_name_the_field_and_nothing_is_stored(hub):
    view = AlertsView(hub, metric="price", op="crosses_above", for_bars=3)
    await view.add_rule()
    assert view.error.visible and view.error.object.startswith("rule.for_bars:")
    view.param.update(for_bars=1, reset="abc")
    await view.add_rule()
    assert view.error.object.startswith("rule.reset:")
    assert hub.rules() == []


async def test_add_edit_mute_delete_reach_the_store_and_the_engine(hub):
    view = AlertsView(hub, name_="z2", metric="zscore", leg_a="ETHUSDT", leg_b="BTCUSDT", op="outside",
                      threshold=2.0, reset="1")
    await view.add_rule()
    assert not view.error.visible, view.error.object
    (rule,) = hub.rules()
    assert rule.pair == ("ETHUSDT", "BTCUSDT") and rule.reset == 1.0
    assert rule.id in hub.runtime.rules.alerting.rules
    assert list(view.rules_table.value["name"]) == ["z2"]

    await view.add_rule()  # the same name twice
    assert view.error.visible and "already exists" in view.error.object

    view.rules_table.selection = [0]
    assert view.threshold == 2.0 and view.name_ == "z2"  # selecting loads the form
    view.threshold = 3.0
    await view.update_rule()
    assert hub.runtime.rules.alerting.rules[rule.id].threshold == 3.0
    await view.toggle_mute()
    assert hub.runtime.rules.alerting.rules[rule.id].muted
    with Store(hub.runtime.db_path) as store:
        (row,) = store.read_rules()
    assert '"muted":true' in row[2] and '"threshold":3.0' in row[2]

    await view.delete_rule()
    assert hub.rules() == [] and rule.id not in hub.runtime.rules.alerting.rules
    assert view.rules_table.value.empty


async def test_pull_toasts_only_new_alerts_and_logs_them(hub):
    view = AlertsView(hub)
    assert view.pull() == [] and view.toasts == 0  # a fresh page: the backlog, no toasts
    alert = Alert(1_700_000_000_000, 1, "r", "zscore", "BTCUSDT/ETHUSDT", "1s", 2.5, 2.0, "zscore > 2")
    hub.runtime.rules.alerting.alerts.emit([alert])
    assert view.pull() == [alert] and view.toasts == 1
    assert list(view.log_table.value["rule"]) == ["r"]
    csv = view.downloads[0].callback().read()
    assert csv.splitlines()[0].startswith("time,rule_id,rule,metric") and "2023-11-14T22:13:20Z" in csv


async def test_a_rule_on_a_symbol_not_ingested_is_listed_inactive_and_never_fatal(tmp_path):
    """A config rule naming symbols the feed does not follow (a --symbols override) is kept,
    shown as inactive with the reason, and not evaluated (issue 13, item 1)."""
    rules = [{"name": "sol z", "metric": "zscore", "pair": ["SOLUSDT", "BTCUSDT"], "timeframe": "1s",
              "op": "outside", "threshold": 2.0},
             {"name": "eth 1h", "metric": "price", "symbol": "ETHUSDT", "timeframe": "1h", "op": ">",
              "threshold": 1.0}]
    rt = Runtime(_config(tmp_path, source="replay", **{"alerts.rules": rules}))
    hub = Hub(rt, buffer_bars=50)
    await rt.start()
    try:
        view = AlertsView(hub)
        view.refresh_rules()
        status = dict(zip(view.rules_table.value["name"], view.rules_table.value["status"], strict=True))
        assert status["sol z"].startswith("inactive: SOLUSDT not ingested")
        assert status["eth 1h"].startswith("inactive: timeframe 1h not built")
        assert rt.rules.alerting is not None and rt.rules.alerting.rules == {}  # neither is evaluated
        with Store(rt.db_path) as store:
            assert [name for _, name, _ in store.read_rules()] == ["sol z", "eth 1h"]  # both stay stored
    finally:
        await rt.stop()
