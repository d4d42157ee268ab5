"""The one streamz pipeline of a process: feed batches -> store, bars -> outputs for the dashboard."""
