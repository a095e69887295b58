"""Charts as inline SVG, drawn on the server: no chart library, no script, nothing fetched.

Each chart is an ``<svg role="img">`` with an ``aria-label`` summary and a ``<title>`` on every mark (the
browser shows it on hover); the pages put the same numbers in a table beside it. ``data-field`` /
``data-value`` on the ``<svg>`` carry the series as the API names and gives it, for tests.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from html import escape

from markupsafe import Markup

from .render import Palette, fmt_num

W, H = 960, 260  # viewBox size; the SVG scales to its container's width
PAD_L, PAD_R, PAD_T, PAD_B = 56, 16, 12, 34


def _svg(body: list[str], label: str, field: str | None = None, value: object = None, height: int = H) -> Markup:
    attrs = f'role="img" aria-label="{escape(label)}" viewBox="0 0 {W} {height}" class="chart"'
    if field is not None:
        attrs += f' data-field="{escape(field)}" data-value="{escape(json.dumps(value))}"'
    return Markup(f"<svg {attrs} xmlns=\"http://www.w3.org/2000/svg\"><title>{escape(label)}</title>"
                  + "".join(body) + "</svg>")


def _ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    """About ``n`` round tick values in [lo, hi] (1, 2 or 5 x a power of ten apart; integers)."""
    if hi <= lo:
        return [lo]
    raw = (hi - lo) / n
    mag = 10 ** math.floor(math.log10(raw))
    nice = max(1.0, next(m * mag for m in (1, 2, 5, 10) if m * mag >= raw))
    t, out = math.ceil(lo / nice) * nice, []
    while t <= hi + 1e-9:
        out.append(t)
        t += nice
    return out


def _axis_x(lo: int, hi: int, x_of, y: float) -> list[str]:
    out = [f'<line x1="{PAD_L}" y1="{y}" x2="{W - PAD_R}" y2="{y}" class="axis"/>']
    for t in _ticks(lo, hi):
        x = x_of(t)
        out.append(f'<line x1="{x:.1f}" y1="{y}" x2="{x:.1f}" y2="{y + 4}" class="axis"/>'
                   f'<text x="{x:.1f}" y="{y + 17}" text-anchor="middle" class="tick">{fmt_num(int(t))}</text>')
    return out


def composition_columns(buckets: Sequence[dict], sources: Sequence[str], palette: Palette, label: str) -> Markup:
    """100%-stacked columns: one per step bucket ``{"step_start", "step_end", "tokens": {source: n}}``."""
    if not buckets:
        return _svg(['<text x="480" y="130" text-anchor="middle" class="tick">no trained rows</text>'], label)
    lo, hi = buckets[0]["step_start"], buckets[-1]["step_end"]
    span = max(hi - lo, 1)
    plot_w, plot_h = W - PAD_L - PAD_R, H - PAD_T - PAD_B

    def x_of(step: float) -> float:
        return PAD_L + (step - lo) / span * plot_w

    body = []
    for pct in (0, 0.25, 0.5, 0.75, 1):
        y = PAD_T + plot_h * (1 - pct)
        body.append(f'<line x1="{PAD_L}" y1="{y:.1f}" x2="{W - PAD_R}" y2="{y:.1f}" class="grid"/>'
                    f'<text x="{PAD_L - 6}" y="{y + 4:.1f}" text-anchor="end" class="tick">{int(pct * 100)}%</text>')
    for b in buckets:
        total = sum(b["tokens"].values()) or 1
        x0, x1 = x_of(b["step_start"]), x_of(b["step_end"])
        y = PAD_T + plot_h
        for src in sources:
            n = b["tokens"].get(src, 0)
            if not n:
                continue
            h = n / total * plot_h
            y -= h
            tip = (f"steps {b['step_start']:,}..{b['step_end'] - 1:,}: {src} {100 * n / total:.1f}% "
                   f"({n:,} tokens)")
            body.append(f'<rect x="{x0:.2f}" y="{y:.2f}" width="{max(x1 - x0 - 0.5, 0.5):.2f}" height="{h:.2f}" '
                        f'fill="{palette.strong(src)}"><title>{escape(tip)}</title></rect>')
    body += _axis_x(lo, hi, x_of, PAD_T + plot_h)
    body.append(f'<text x="{W - PAD_R}" y="{H - 2}" text-anchor="end" class="tick">training step</text>')
    value = [{"step_start": b["step_start"], "tokens": b["tokens"]} for b in buckets]
    return _svg(body, label, "composition", value)


def share_bar(parts: Sequence[tuple[str, int]], palette: Palette, label: str) -> Markup:
    """One horizontal bar split by source: ``[(source, tokens), ...]``."""
    total = sum(n for _, n in parts) or 1
    height = 40
    x = 0.0
    body = []
    for src, n in parts:
        w = n / total * W
        body.append(f'<rect x="{x:.2f}" y="4" width="{w:.2f}" height="32" fill="{palette.strong(src)}">'
                    f'<title>{escape(f"{src}: {100 * n / total:.1f}% ({n:,} tokens)")}</title></rect>')
        if w > 90:
            body.append(f'<text x="{x + 6:.1f}" y="25" class="barlabel">{escape(src)} {100 * n / total:.0f}%</text>')
        x += w
    return _svg(body, label, "tokens_by_source", dict(parts), height=height)


def histogram(counts: Sequence[int], bucket_steps: int, train_steps: int, label: str) -> Markup:
    """Bars of ``counts[i]`` = occurrences in steps [i * bucket_steps, (i + 1) * bucket_steps)."""
    plot_w, plot_h = W - PAD_L - PAD_R, H - PAD_T - PAD_B
    top = max(max(counts, default=0), 1)
    span = max(len(counts) * bucket_steps, 1)

    def x_of(step: float) -> float:
        return PAD_L + step / span * plot_w

    body = []
    for t in _ticks(0, top, 4):
        y = PAD_T + plot_h * (1 - t / top)
        body.append(f'<line x1="{PAD_L}" y1="{y:.1f}" x2="{W - PAD_R}" y2="{y:.1f}" class="grid"/>'
                    f'<text x="{PAD_L - 6}" y="{y + 4:.1f}" text-anchor="end" class="tick">{fmt_num(int(t))}</text>')
    for i, c in enumerate(counts):
        if not c:
            continue
        x0, x1 = x_of(i * bucket_steps), x_of((i + 1) * bucket_steps)
        h = c / top * plot_h
        a, b = i * bucket_steps, min((i + 1) * bucket_steps, train_steps) - 1
        body.append(f'<rect x="{x0:.2f}" y="{PAD_T + plot_h - h:.2f}" width="{max(x1 - x0 - 0.5, 0.5):.2f}" '
                    f'height="{h:.2f}" class="bar"><title>steps {a:,}..{b:,}: {c:,}</title></rect>')
    body += _axis_x(0, span, x_of, PAD_T + plot_h)
    body.append(f'<text x="{W - PAD_R}" y="{H - 2}" text-anchor="end" class="tick">training step</text>')
    return _svg(body, label, "histogram", list(counts))


def lines(x_labels: Sequence[str], series: Sequence[dict], label: str, field: str,
          marks: Sequence[tuple[int, str]] = (), y_range: tuple[float, float] | None = None) -> Markup:
    """Lines over ordinal x positions (checkpoints): ``series`` = ``[{"name", "color", "values": [y|None]}]``;
    ``marks`` = ``[(x index, caption)]`` drawn as dashed verticals (a treatment step)."""
    plot_w, plot_h = W - PAD_L - PAD_R, H - PAD_T - PAD_B
    ys = [v for s in series for v in s["values"] if v is not None]
    lo, hi = y_range if y_range is not None else (min(ys, default=0.0), max(ys, default=1.0))
    if hi <= lo:
        lo, hi = lo - 0.5, hi + 0.5
    n = max(len(x_labels), 1)

    def x_of(i: float) -> float:
        return PAD_L + (i + 0.5) / n * plot_w

    def y_of(v: float) -> float:
        return PAD_T + plot_h * (1 - (v - lo) / (hi - lo))

    body = []
    for k in range(5):
        v = lo + (hi - lo) * k / 4
        body.append(f'<line x1="{PAD_L}" y1="{y_of(v):.1f}" x2="{W - PAD_R}" y2="{y_of(v):.1f}" class="grid"/>'
                    f'<text x="{PAD_L - 6}" y="{y_of(v) + 4:.1f}" text-anchor="end" class="tick">{v:.3g}</text>')
    every = max(1, -(-n // 12))
    for i, lab in enumerate(x_labels):
        if i % every == 0 or i == n - 1:
            body.append(f'<text x="{x_of(i):.1f}" y="{PAD_T + plot_h + 17}" text-anchor="middle" class="tick">'
                        f'{escape(lab)}</text>')
    for i, caption in marks:
        body.append(f'<line x1="{x_of(i):.1f}" y1="{PAD_T}" x2="{x_of(i):.1f}" y2="{PAD_T + plot_h}" class="mark"/>'
                    f'<text x="{x_of(i) + 4:.1f}" y="{PAD_T + 12}" class="marklabel">{escape(caption)}</text>')
    for s in series:
        pts = [(x_of(i), y_of(v)) for i, v in enumerate(s["values"]) if v is not None]
        if len(pts) > 1:
            d = " ".join(f"{x:.1f},{y:.1f}" for x, y in pts)
            body.append(f'<polyline points="{d}" fill="none" stroke="{s["color"]}" stroke-width="2.5"/>')
        for (x, y), (i, v) in zip(pts, [(i, v) for i, v in enumerate(s["values"]) if v is not None]):
            body.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="4" fill="{s["color"]}"><title>'
                        f'{escape(s["name"])} at {escape(x_labels[i])}: {v:.4g}</title></circle>')
    value = {s["name"]: s["values"] for s in series}
    return _svg(body, label, field, value)


def timeline(steps: Sequence[int], train_steps: int, label: str) -> Markup:
    """Ticks on a line from step 0 to train_steps: the steps where training saw something."""
    height = 70
    plot_w = W - PAD_L - PAD_R
    span = max(train_steps, 1)

    def x_of(step: float) -> float:
        return PAD_L + step / span * plot_w

    body = [f'<line x1="{PAD_L}" y1="30" x2="{W - PAD_R}" y2="30" class="axis"/>']
    for s in sorted(set(steps)):
        body.append(f'<line x1="{x_of(s):.2f}" y1="14" x2="{x_of(s):.2f}" y2="46" class="tickmark">'
                    f'<title>step {s:,}</title></line>')
    for t in _ticks(0, span):
        body.append(f'<text x="{x_of(t):.1f}" y="64" text-anchor="middle" class="tick">{fmt_num(int(t))}</text>')
    return _svg(body, label, "steps", sorted(set(steps)), height=height)
