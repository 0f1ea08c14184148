"""SVG geometry for the A/B report in the admin: accuracy per day, one line per model
version, with its 95 % interval as a band. Plain numbers for the template, no JS."""

from __future__ import annotations

from apps.ab_testing.selectors import accuracy_by_version_and_day

WIDTH, HEIGHT, PAD = 560, 200, 32
COLOURS = ["#2563eb", "#d97706", "#059669", "#7c3aed", "#dc2626", "#0891b2"]


def _n(value: float) -> str:
    return f"{value:.1f}"


def accuracy_chart() -> dict:
    rows = accuracy_by_version_and_day()
    days = sorted({r["day"] for r in rows})
    if not days:
        return {"series": [], "days": []}
    span = (WIDTH - 2 * PAD) / max(len(days) - 1, 1)

    def x(day: str) -> float:
        return PAD + days.index(day) * span if len(days) > 1 else WIDTH / 2

    def y(value: float) -> float:
        return HEIGHT - PAD - (HEIGHT - 2 * PAD) * value

    series = []
    for i, version in enumerate(sorted({r["model_version"] for r in rows})):
        mine = [r for r in rows if r["model_version"] == version]
        points = [{"x": _n(x(r["day"])), "y": _n(y(r["accuracy"])),
                   "title": f"v{version} {r['day']}: accuracy {r['accuracy']:.2f} "
                            f"(n={r['sample_size']}, 95 % CI {r['accuracy_ci95'][0]:.2f}–"
                            f"{r['accuracy_ci95'][1]:.2f})"} for r in mine]
        upper = [f"{_n(x(r['day']))},{_n(y(r['accuracy_ci95'][1]))}" for r in mine]
        lower = [f"{_n(x(r['day']))},{_n(y(r['accuracy_ci95'][0]))}" for r in reversed(mine)]
        series.append({"version": version, "colour": COLOURS[i % len(COLOURS)],
                       "points": points,
                       "polyline": " ".join(f"{p['x']},{p['y']}" for p in points),
                       "band": " ".join(upper + lower)})
    return {
        "series": series, "days": [{"label": d[5:], "x": _n(x(d))} for d in days],
        "width": WIDTH, "height": HEIGHT, "y0": _n(y(0)), "y50": _n(y(0.5)), "y100": _n(y(1)),
        "x1": PAD, "x2": WIDTH - PAD,
        "desc": "Accuracy per day by model version: " + "; ".join(
            p["title"] for s in series for p in s["points"]),
    }
