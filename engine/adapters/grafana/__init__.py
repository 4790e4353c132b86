"""Grafana dashboards for the engine's `/metrics` (`burnrate dashboards`).

`promql` writes the panels' queries from a config and needs nothing beyond the
standard library; `dashboards` builds the dashboard models with
`grafana-foundation-sdk` (the `dashboards` extra), imported only by the command that
writes them, so no other command pays for it.
"""
