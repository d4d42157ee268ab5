"""The alert rule book of a run: rules kept in the database (config rules seeded once), watched
live by ``Alerting`` on the shared pipeline, their alerts stored, sent to the webhook and listed.

Edits come from any session; each is stored through the writer thread, then applied live.
"""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path
from typing import Any, cast

from quantpanel.alerts.engine import Alert
from quantpanel.alerts.rules import Rule, RuleError, parse_rule
from quantpanel.config import Config, alert_rules
from quantpanel.models import Bar
from quantpanel.notify.webhook import Webhook
from quantpanel.pipeline.alerting import Alerting, rows
from quantpanel.pipeline.graph import Pipeline
from quantpanel.storage.store import Store
from quantpanel.storage.writer import StoreWriter

__all__ = ["RuleBook"]

log = logging.getLogger(__name__)


def _spec(rule: Rule) -> str:
    """A rule as stored: its JSON without the id (the table's key)."""
    return rule.model_dump_json(exclude={"id"})


class RuleBook:
    """Built once the pipeline and the writer exist; ``close`` stops the webhook."""

    def __init__(self, cfg: Config, pipeline: Pipeline, writer: StoreWriter, db_path: Path,
                 history: dict[tuple[str, str], list[Bar]]) -> None:
        self._writer, self._db = writer, db_path
        self.alerting = Alerting(cfg, pipeline.pairs, history=history, history_bars=cfg.dashboard.buffer_bars)

        def seed(store: Store) -> list[tuple[int, str, str]]:
            for rule in alert_rules(cfg):
                store.seed_rule(rule.name, _spec(rule))
            return store.read_rules()

        rules = []
        for rid, name, spec in cast(list[tuple[int, str, str]], writer.call(seed).result()):
            try:
                rules.append(parse_rule({**json.loads(spec), "id": rid, "name": name},
                                        where=f"{db_path}: alert_rules id {rid}"))
            except (RuleError, ValueError) as exc:  # keep running; the rule stays in the table
                log.error("alert rule skipped: %s", exc)
        self.alerting.set_rules(rules)
        pipeline.updates.sink(self.alerting.on_update)
        pipeline.pair_points.sink(self.alerting.on_pairs)
        market = pipeline.market
        market.updates.sink(lambda batch: self.alerting.on_market(batch, market.views))
        self.alerting.alerts.sink(lambda alerts: writer.put_alerts(rows(alerts)))
        hook = cfg.alerts.webhook
        self.webhook: Webhook | None = None
        if hook.url:
            self.webhook = Webhook(hook.url, timeout_s=hook.timeout_s, retries=hook.retries,
                                   queue_max=hook.queue_max)
            self.alerting.alerts.sink(self.webhook.put)

    async def save(self, rule: Rule) -> Rule:
        """Store a new or edited rule, then watch it live. Returns it with its id."""
        fut = self._writer.call(lambda store: store.save_rule(rule.name, _spec(rule), rule.id))
        saved = rule.model_copy(update={"id": await asyncio.wrap_future(fut)})
        self.alerting.upsert(saved)
        return saved

    async def delete(self, rule_id: int) -> None:
        await asyncio.wrap_future(self._writer.call(lambda store: store.delete_rule(rule_id)))
        self.alerting.remove(rule_id)

    def recent_alerts(self, last: int) -> list[Alert]:
        """The newest stored alerts, oldest first. Blocking: its own read-only connection."""
        with Store(self._db, readonly=True) as store:
            return [Alert(*cast(tuple[Any, ...], row)) for row in store.read_alerts(last)]  # in ALERT_COLUMNS order

    def close(self) -> None:
        if self.webhook is not None:
            self.webhook.close()
