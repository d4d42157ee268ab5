"""The Panel dashboard: a shared hub fed by the runtime, pure plot builders, and per-session views."""
