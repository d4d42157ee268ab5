"""Scale-out over Redis Streams: one ingest process publishes, any number of dashboards consume.

``publisher`` runs in ``quantpanel ingest --broker``: the one runtime (feed, store, bars, alerts),
its outputs published per series. ``remote`` is what a ``quantpanel serve --broker`` process runs
instead of a runtime: the hub is fed from the streams and its actions go back as commands.
``local`` starts the private ``redis-server`` of ``serve --workers N``. See ``docs/scaling.md``.
"""
