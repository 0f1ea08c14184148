"""``{% immune_dashboard %}``: the review work at a glance, as server-rendered SVG charts.

The geometry is computed here; ``console/dashboard.html`` only places it, and Django's
autoescaping escapes every text and URL it prints. Coordinates go out as preformatted
strings so that number localisation can never put a decimal comma into an SVG attribute.
Text and axes use ``currentColor`` (styled with the admin's CSS variables in
``static/immune/dashboard.css``), so the charts follow the admin's light and dark themes.
"""

from __future__ import annotations

import math
from datetime import date, datetime

from django import template
from django.urls import reverse

from apps.console.dashboard import OPEN_WORK_STATUSES, PENDING_STATUSES, dashboard_data
from apps.decisions.models import DecisionType

register = template.Library()

SEVERITY_COLOURS = {"critical": "#7f1d1d", "high": "#b91c1c", "medium": "#b45309",
                    "low": "#1d4ed8", "none": "#6b7280", "unknown": "#6b7280"}
DECISION_COLOURS = {"approve": "#15803d", "reject": "#b91c1c", "modify": "#b45309",
                    "escalate": "#7c3aed", "accept_risk": "#0e7490",
                    "false_positive": "#6b7280"}
DECISION_LABELS = dict(DecisionType.choices)


def _n(value: float) -> str:
    """A coordinate for an SVG attribute: at most one decimal, always a decimal point."""
    text = f"{value:.1f}"
    return text[:-2] if text.endswith(".0") else text


def humanize_seconds(seconds: float | None) -> str:
    """``45 s``, ``4 min``, ``2.3 h``, ``1.5 d``; an em dash when there is nothing."""
    if seconds is None:
        return "—"
    if seconds < 59.5:
        return f"{round(seconds)} s"
    if seconds < 90 * 60:
        return f"{round(seconds / 60)} min"
    if seconds < 48 * 3600:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} d"


register.filter("review_duration", humanize_seconds)


def _day_label(day: date) -> str:
    return f"{day:%b} {day.day}"


def _nice_ceiling(value: int) -> tuple[int, int]:
    """The axis top at or above ``value`` and its tick step (1, 2, 5, 10, 20, 50 ...),
    at most four steps high."""
    value, magnitude = max(value, 1), 1
    while True:
        for step in (magnitude, 2 * magnitude, 5 * magnitude):
            if math.ceil(value / step) <= 4:
                return math.ceil(value / step) * step, step
        magnitude *= 10


def _changelist() -> str:
    return reverse("admin:reviews_apv_changelist")


def _pending_link(changelist: str, severity: str) -> str:
    return f"{changelist}?severity__exact={severity}&status__in={','.join(PENDING_STATUSES)}"


def _overdue_link(changelist: str, severity: str = "") -> str:
    """The figure counts open work only, so the list is narrowed to the same statuses;
    ``status=all`` lifts the queue's default (pending review + escalated) status filter."""
    link = f"{changelist}?overdue=yes"
    if severity:
        link += f"&severity__exact={severity}"
    return f"{link}&status=all&status__in={','.join(OPEN_WORK_STATUSES)}"


def severity_chart(data: dict, changelist: str) -> dict:
    """Horizontal bars: pending work (pending review + escalated) per severity."""
    label_w, bar_max, row_h, bar_h, pad = 76, 300, 26, 16, 6
    counts = data["pending_by_severity"]
    top = max(counts.values()) or 1
    rows = []
    for i, severity in enumerate(data["severities"]):
        n = counts[severity]
        width = bar_max * n / top if n else 0
        width = max(width, 2) if n else 0
        y = pad + i * row_h
        rows.append({
            "severity": severity, "count": n, "colour": SEVERITY_COLOURS[severity],
            "href": _pending_link(changelist, severity),
            "aria": f"{n} {severity} APV{'' if n == 1 else 's'} awaiting review: open the queue",
            "row_y": _n(y - (row_h - bar_h) / 2), "row_h": _n(row_h),
            "y": _n(y), "h": _n(bar_h), "x": _n(label_w), "w": _n(width),
            "label_x": _n(label_w - 8), "text_y": _n(y + bar_h / 2 + 4),
            "count_x": _n(label_w + width + 6),
        })
    width = label_w + bar_max + 48
    height = 2 * pad + len(rows) * row_h - (row_h - bar_h)
    summary = ", ".join(f"{r['severity']} {r['count']}" for r in rows)
    return {"rows": rows, "width": _n(width), "height": _n(height),
            "row_w": _n(width), "total": data["pending_total"],
            "desc": f"{data['pending_total']} APVs awaiting review: {summary}."}


def past_sla_chart(data: dict, changelist: str) -> dict:
    """The past-SLA total and one stacked bar of it per severity."""
    bar_w, bar_h = 300, 14
    total = data["past_sla"]["total"]
    by_severity = data["past_sla"]["by_severity"]
    segments, x = [], 0.0
    for severity in data["severities"]:
        n = by_severity[severity]
        if not n:
            continue
        width = bar_w * n / total
        segments.append({
            "severity": severity, "count": n, "colour": SEVERITY_COLOURS[severity],
            "href": _overdue_link(changelist, severity),
            "aria": f"{n} {severity} APV{'' if n == 1 else 's'} past SLA: open the list",
            "x": _n(x), "w": _n(width),
        })
        x += width
    breakdown = [{"severity": s, "count": by_severity[s], "colour": SEVERITY_COLOURS[s],
                  "href": _overdue_link(changelist, s)} for s in data["severities"]]
    summary = ", ".join(f"{b['severity']} {b['count']}" for b in breakdown if b["count"])
    return {"total": total, "href": _overdue_link(changelist), "segments": segments,
            "breakdown": breakdown, "width": _n(bar_w), "height": _n(bar_h),
            "desc": f"{total} APVs of open work past their SLA"
                    + (f": {summary}." if summary else ".")}


def decisions_chart(data: dict) -> dict:
    """Stacked columns: decisions per UTC day, split by decision type, oldest first."""
    days = data["decisions_per_day"]
    left, pitch, bar_w, pad_top, plot_h, bottom = 34, 36, 24, 10, 140, 24
    top, step = _nice_ceiling(max(day["total"] for day in days))
    base = pad_top + plot_h
    label_every = max(1, math.ceil(len(days) / 14))
    columns = []
    for i, day in enumerate(days):
        x = left + i * pitch + (pitch - bar_w) / 2
        y, segments = float(base), []
        for decision_type in data["decision_types"]:
            n = day["by_type"][decision_type]
            if not n:
                continue
            height = plot_h * n / top
            y -= height
            segments.append({"type": decision_type, "count": n,
                             "colour": DECISION_COLOURS.get(decision_type, "#6b7280"),
                             "x": _n(x), "y": _n(y), "w": _n(bar_w), "h": _n(height)})
        parts = ", ".join(f"{DECISION_LABELS.get(s['type'], s['type']).lower()} {s['count']}"
                          for s in segments)
        columns.append({
            "date": day["date"].isoformat(), "label": _day_label(day["date"]),
            "show_label": (len(days) - 1 - i) % label_every == 0,
            "is_today": i == len(days) - 1,
            "total": day["total"], "segments": segments,
            "title": f"{_day_label(day['date'])}: {day['total']} "
                     f"decision{'' if day['total'] == 1 else 's'}"
                     + (f" ({parts})" if parts else ""),
            "hit_x": _n(left + i * pitch), "hit_w": _n(pitch),
            "label_x": _n(left + i * pitch + pitch / 2), "label_y": _n(base + 16),
        })
    ticks = [{"label": str(value), "y": _n(base - plot_h * value / top),
              "text_y": _n(base - plot_h * value / top + 4)}
             for value in range(0, top + 1, step)]
    width = left + len(days) * pitch + 6
    legend = [{"type": t, "label": DECISION_LABELS.get(t, t),
               "colour": DECISION_COLOURS.get(t, "#6b7280")} for t in data["decision_types"]]
    first, last = days[0]["date"], days[-1]["date"]
    return {
        "columns": columns, "ticks": ticks, "legend": legend,
        "width": _n(width), "height": _n(base + bottom), "plot_top": _n(pad_top),
        "plot_h": _n(plot_h),
        "base": _n(base), "axis_x": _n(left), "axis_x2": _n(width - 6),
        "tick_x": _n(left - 6), "total": data["decisions_total"], "days": len(days),
        "desc": f"{data['decisions_total']} decisions from {_day_label(first)} to "
                f"{_day_label(last)} (UTC); "
                + "; ".join(f"{c['label']}: {c['total']}" for c in columns) + ".",
    }


def median_chart(data: dict) -> dict:
    """The median time to decision over the window, and a sparkline of the daily medians."""
    days = data["decisions_per_day"]
    width, height, pad = 224, 44, 4
    values = [day["median_seconds"] for day in days]
    known = [v for v in values if v is not None]
    top = max(known) if known else 1.0
    top = top or 1.0
    span = (width - 2 * pad) / max(len(days) - 1, 1)
    points = []
    for i, (day, value) in enumerate(zip(days, values, strict=True)):
        if value is None:
            continue
        points.append({"x": _n(pad + i * span), "y": _n(height - pad - (height - 2 * pad)
                                                           * value / top),
                       "title": f"{_day_label(day['date'])}: {humanize_seconds(value)}"})
    summary = "; ".join(f"{_day_label(d['date'])}: {humanize_seconds(v)}"
                        for d, v in zip(days, values, strict=True) if v is not None)
    return {
        "median": humanize_seconds(data["median_seconds"]),
        "median_seconds": data["median_seconds"], "count": data["median_count"],
        "points": points, "polyline": " ".join(f"{p['x']},{p['y']}" for p in points),
        "width": _n(width), "height": _n(height), "baseline_y": _n(height - pad),
        "baseline_x1": _n(pad), "baseline_x2": _n(width - pad),
        "desc": ("Median time to decision per day (UTC): " + summary + ".") if summary
        else "No decision with a review time in the window.",
    }


def dashboard_context(*, now: datetime | None = None, days: int = 14) -> dict:
    data = dashboard_data(now=now, days=days)
    changelist = _changelist()
    return {
        "data": data,
        "pending": severity_chart(data, changelist),
        "past_sla": past_sla_chart(data, changelist),
        "decisions": decisions_chart(data),
        "median": median_chart(data),
        "wargame_verdicts": data["wargame_verdicts"],
        "model_accuracy": data["model_accuracy"],
    }


@register.inclusion_tag("console/dashboard.html")
def immune_dashboard(days: int = 14) -> dict:
    """``{% immune_dashboard %}`` (or ``{% immune_dashboard days=28 %}``)."""
    return dashboard_context(days=days)
