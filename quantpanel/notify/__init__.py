"""Outbound notifications of alerts (beyond the dashboard): the webhook."""
