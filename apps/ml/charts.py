"""The calibration chart of a model version (reliability diagram), as plain SVG.

For each bin of predicted P(effective), the observed share of effective patches among the
out-of-fold predictions of that bin, with its 95 % Wilson interval as a bar; a perfectly
calibrated model sits on the diagonal. One series per evaluation (stratified folds, leave
one package out). The same markup is shown on the model version's admin page and written
into docs/ml.md's image (``calibration_svg``). Only numbers and fixed words go into it.
"""

from __future__ import annotations

from html import escape

WIDTH, HEIGHT, PAD = 420, 300, 44
SERIES = (("stratified", "#2563eb", "stratified folds"),
          ("grouped", "#d97706", "leave one package out"))


def _x(value: float) -> float:
    return PAD + (WIDTH - 2 * PAD) * value


def _y(value: float) -> float:
    return HEIGHT - PAD - (HEIGHT - 2 * PAD) * value


def calibration_svg(evaluation: dict, *, title: str = "") -> str:
    """The reliability diagram of ``evaluation`` (ModelVersion.evaluation); "" when it has
    no calibration table."""
    shown = [(key, colour, label, evaluation[key]["calibration"])
             for key, colour, label in SERIES
             if (evaluation or {}).get(key) and evaluation[key].get("calibration")]
    if not shown:
        return ""
    desc = []
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="calibration-chart" '
        f'viewBox="0 0 {WIDTH} {HEIGHT}" width="{WIDTH}" height="{HEIGHT}" role="img" '
        f'font-family="sans-serif">',
        f'<rect x="0" y="0" width="{WIDTH}" height="{HEIGHT}" fill="#ffffff"/>',
    ]
    if title:
        parts.append(f'<text x="{WIDTH / 2:.1f}" y="16" font-size="12" text-anchor="middle">'
                     f'{escape(title)}</text>')
    for tick in (0, 0.25, 0.5, 0.75, 1):
        parts.append(f'<line x1="{_x(0):.1f}" x2="{_x(1):.1f}" y1="{_y(tick):.1f}" '
                     f'y2="{_y(tick):.1f}" stroke="#e5e7eb"/>')
        parts.append(f'<text x="{PAD - 6}" y="{_y(tick) + 3:.1f}" font-size="10" '
                     f'text-anchor="end">{tick:.2f}</text>')
        parts.append(f'<text x="{_x(tick):.1f}" y="{HEIGHT - PAD + 14}" font-size="10" '
                     f'text-anchor="middle">{tick:.2f}</text>')
    parts.append(f'<line x1="{_x(0):.1f}" y1="{_y(0):.1f}" x2="{_x(1):.1f}" y2="{_y(1):.1f}" '
                 f'stroke="#9ca3af" stroke-dasharray="4 4"/>')
    parts.append(f'<text x="{WIDTH / 2:.1f}" y="{HEIGHT - 8}" font-size="11" '
                 f'text-anchor="middle">predicted P(effective), mean of the bin</text>')
    parts.append(f'<text x="12" y="{HEIGHT / 2:.1f}" font-size="11" text-anchor="middle" '
                 f'transform="rotate(-90 12 {HEIGHT / 2:.1f})">observed share effective</text>')
    for offset, (_key, colour, label, table) in enumerate(shown):
        shift = (offset - (len(shown) - 1) / 2) * 4  # side by side, not on top
        points = []
        for row in table:
            x = _x(row["mean_predicted"]) + shift
            low, high = row["observed_ci95"]
            parts.append(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{_y(low):.1f}" '
                         f'y2="{_y(high):.1f}" stroke="{colour}" stroke-opacity="0.5" '
                         f'stroke-width="2"/>')
            tip = (f"{label}: predicted {row['mean_predicted']:.2f}, observed "
                   f"{row['observed']:.2f} (95 % CI {low:.2f}–{high:.2f}), n = {row['n']}")
            desc.append(tip)
            radius = 2.5 + min(row["n"], 200) ** 0.5 / 3
            parts.append(f'<circle cx="{x:.1f}" cy="{_y(row["observed"]):.1f}" '
                         f'r="{radius:.1f}" fill="{colour}" fill-opacity="0.8">'
                         f'<title>{escape(tip)}</title></circle>')
            points.append(f"{x:.1f},{_y(row['observed']):.1f}")
        parts.append(f'<polyline points="{" ".join(points)}" fill="none" stroke="{colour}" '
                     f'stroke-width="1.5"/>')
        parts.append(f'<rect x="{PAD + 8}" y="{PAD - 8 + offset * 16}" width="10" height="10" '
                     f'fill="{colour}"/><text x="{PAD + 22}" y="{PAD + 1 + offset * 16}" '
                     f'font-size="11">{escape(label)}</text>')
    parts.insert(1, f"<desc>{escape('Calibration: ' + '; '.join(desc))}</desc>")
    parts.append("</svg>")
    return "\n".join(parts)
