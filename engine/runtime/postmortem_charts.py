"""The charts of a postmortem: one PNG per incident and SLO, drawn with matplotlib.

matplotlib is an optional dependency (the `charts` extra) and is imported only here,
when charts are drawn; without it `draw_charts` raises ChartsUnavailable and the
Markdown says why there are none. Figures are built with matplotlib's object API and
written by its Agg renderer (headless: no display, no global pyplot state).

Each file has two panels over the same time axis (UTC): the burn rate of each of the
SLO's policy rows' long and short windows (log scale; each row's factor as a dashed
threshold in the colour of its long window), and the budget remaining over the SLO's
period in percent. Vertical lines mark the onset, the first page and the close.
"""

from __future__ import annotations

import datetime as dt
import math
import re
from pathlib import Path

from engine.core.postmortem import ChartLine, PostmortemIncident

__all__ = ["ChartsUnavailable", "chart_name", "draw_charts"]


class ChartsUnavailable(Exception):
    """matplotlib cannot be imported (the reason is the message)."""


def chart_name(stem: str, incident_id: str, slo: str) -> str:
    """`<stem>-<incident id>-<slo>.png`, with characters unsafe in a file name as `_`."""
    return re.sub(r"[^A-Za-z0-9._-]", "_", f"{stem}-{incident_id}-{slo}") + ".png"


def _times(s: ChartLine) -> list[dt.datetime]:
    return [dt.datetime.fromtimestamp(t, dt.UTC) for t in s.times]


def _values(s: ChartLine, scale: float = 1.0) -> list[float]:
    return [math.nan if v is None else v * scale for v in s.values]


def draw_charts(inc: PostmortemIncident, directory: Path, stem: str) -> dict[tuple[str, str], str]:
    """Write the charts of `inc` into `directory`: (incident id, SLO) -> file name."""
    try:
        from matplotlib.dates import DateFormatter
        from matplotlib.figure import Figure
    except ImportError as exc:
        raise ChartsUnavailable(f"matplotlib cannot be imported ({exc})") from None
    out: dict[tuple[str, str], str] = {}
    marks = [
        (inc.impact_start_s, "onset", "tab:orange"),
        (inc.opened_at, "first page", "tab:red"),
    ]
    if inc.closed_at is not None:
        marks.append((inc.closed_at, "closed", "tab:green"))
    for charts in inc.charts:
        fig = Figure(figsize=(10, 7), layout="constrained")
        burn, budget = fig.subplots(2, 1, sharex=True, height_ratios=(2, 1))
        fig.suptitle(f"{charts.slo} ({inc.service}, incident {inc.id})")
        colours = iter(f"C{k}" for k in range(10))
        colour = "C0"
        for line in charts.burn_rates:
            if line.label.split()[1:2] == ["long"]:
                colour = next(colours, "C9")
            style = "-" if "long" in line.label else ":"
            burn.plot(_times(line), _values(line), style, color=colour, label=line.label)
            if line.threshold is not None and "long" in line.label:
                burn.axhline(line.threshold, color=colour, linestyle="--", linewidth=0.8)
        burn.set_yscale("symlog", linthresh=1.0)
        burn.set_ylabel("burn rate (x budget)")
        burn.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize="small")
        burn.set_title("burn rate per policy window (dashed: the row's threshold)", fontsize=9)
        remaining = charts.budget_remaining
        if remaining is not None:
            budget.plot(_times(remaining), _values(remaining, 100.0), color="C7")
            budget.axhline(0.0, color="black", linewidth=0.6)
        budget.set_ylabel("budget remaining (%)")
        budget.set_xlabel("time (UTC)")
        for at, label, c in marks:
            when = dt.datetime.fromtimestamp(at, dt.UTC)
            for ax in (burn, budget):
                ax.axvline(when, color=c, linewidth=0.8, alpha=0.7)
            burn.annotate(
                label,
                (when, 1.0),
                xycoords=("data", "axes fraction"),
                fontsize=8,
                color=c,
                rotation=90,
                va="top",
                ha="right",
            )
        budget.xaxis.set_major_formatter(DateFormatter("%m-%d %H:%M", tz=dt.UTC))  # type: ignore[no-untyped-call]
        name = chart_name(stem, inc.id, charts.slo)
        fig.savefig(directory / name, dpi=100)
        out[inc.id, charts.slo] = name
    return out
