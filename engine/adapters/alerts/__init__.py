"""Alerts out: payload builders, Standard Webhooks signing, and the sinks (webhook,
Alertmanager, console) behind the `Sink` protocol of `engine.adapters.alerts.sinks`."""
