"""report.html: the build's search shown to a person, a table per profile and a size-against-drift chart."""

from __future__ import annotations

import html
import math

_STYLE = """
body{font:14px/1.4 system-ui,sans-serif;margin:2em;color:#222;max-width:1100px}
table{border-collapse:collapse;margin:.5em 0 1.5em}td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}
th{background:#f3f3f3}td.l,th.l{text-align:left}tr.chosen td{background:#e8f6e8;font-weight:600}
tr.fail td{color:#777}.ok{color:#176f2c}.no{color:#b3261e}svg{border:1px solid #ddd;background:#fff}
"""


def _drift_metric(rows) -> str:
    return "top1_agreement" if any(r.metric("top1_agreement") is not None for r in rows) else "cosine"


def _chart(profile, rows: list, metric: str) -> str:
    """SVG scatter: x = artifact bytes on a log scale (sizes and budgets span decades), y = the drift
    metric; dashed lines at the size and drift budgets."""
    width, height, pad = 520, 300, 50
    points = [(r.size_bytes, r.metric(metric)) for r in rows if r.size_bytes and r.metric(metric) is not None]
    max_size = profile.budget.max_size
    drift_limit = profile.drift.get("min_top1_agreement" if metric == "top1_agreement" else "min_cosine")
    xs = [p[0] for p in points] + [max_size]
    ys = [p[1] for p in points] + ([drift_limit] if drift_limit is not None else [])
    if not points:
        return "<p>No candidate produced a measurable artifact.</p>"
    log_lo = math.floor(math.log10(min(xs)))
    log_hi = math.ceil(math.log10(max(xs)))
    if log_hi == log_lo:
        log_hi += 1
    y_lo, y_hi = min(ys), max(ys)
    if y_hi - y_lo < 1e-6:
        y_lo, y_hi = y_lo - 0.01, y_hi + 0.01
    span = y_hi - y_lo

    def sx(v):
        return pad + (width - 2 * pad) * (math.log10(v) - log_lo) / (log_hi - log_lo)

    def sy(v):
        return height - pad - (height - 2 * pad) * (v - y_lo) / span

    parts = [f'<svg width="{width}" height="{height}" role="img" aria-label="size against {metric}">']
    parts.append(f'<line x1="{pad}" y1="{height - pad}" x2="{width - pad}" y2="{height - pad}" stroke="#999"/>')
    parts.append(f'<line x1="{pad}" y1="{pad}" x2="{pad}" y2="{height - pad}" stroke="#999"/>')
    parts.append(f'<text x="{width / 2}" y="{height - 12}" text-anchor="middle">artifact bytes (log scale)</text>')
    for exponent in range(log_lo, log_hi + 1):
        tick = sx(10**exponent)
        parts.append(f'<line x1="{tick:.1f}" y1="{height - pad}" x2="{tick:.1f}" y2="{height - pad + 4}" stroke="#999"/>')
        parts.append(f'<text x="{tick:.1f}" y="{height - pad + 16}" text-anchor="middle" font-size="11">{_bytes_label(10**exponent)}</text>')
    parts.append(f'<text x="14" y="{height / 2}" transform="rotate(-90 14 {height / 2})" text-anchor="middle">{metric}</text>')
    parts.append(f'<text x="{pad - 4}" y="{sy(y_hi) + 4}" text-anchor="end" font-size="11">{y_hi:.4g}</text>')
    parts.append(f'<text x="{pad - 4}" y="{sy(y_lo) + 4}" text-anchor="end" font-size="11">{y_lo:.4g}</text>')
    x = sx(max_size)
    parts.append(f'<line x1="{x:.1f}" y1="{pad}" x2="{x:.1f}" y2="{height - pad}" stroke="#b3261e" stroke-dasharray="5,4"/>')
    parts.append(f'<text x="{x + 3:.1f}" y="{pad + 10}" font-size="11" fill="#b3261e">max_size</text>')
    if drift_limit is not None:
        y = sy(drift_limit)
        parts.append(f'<line x1="{pad}" y1="{y:.1f}" x2="{width - pad}" y2="{y:.1f}" stroke="#b3261e" stroke-dasharray="5,4"/>')
        parts.append(f'<text x="{width - pad}" y="{y - 4:.1f}" font-size="11" text-anchor="end" fill="#b3261e">min {metric}</text>')
    for row in rows:
        value = row.metric(metric)
        if not row.size_bytes or value is None:
            continue
        colour = "#176f2c" if row.passed else "#b3261e"
        label = html.escape(row.candidate)
        parts.append(
            f'<circle cx="{sx(row.size_bytes):.1f}" cy="{sy(value):.1f}" r="5" fill="{colour}"><title>{label}: '
            f'{row.size_bytes} B, {metric} {value:.5f}</title></circle>'
        )
    parts.append("</svg>")
    return "".join(parts)


def _bytes_label(n: int) -> str:
    for unit, size in (("GB", 10**9), ("MB", 10**6), ("kB", 10**3)):
        if n >= size:
            return f"{n // size} {unit}"
    return f"{n} B"


def _table(rows: list, chosen_key: str | None) -> str:
    head = "<tr><th class=l>candidate</th><th>bytes</th><th>gzip</th><th>sparsity</th><th>top-1</th><th>max abs err</th><th>latency ms</th><th class=l>verdict</th></tr>"
    body = []
    for r in rows:
        top1 = r.metric("top1_agreement")
        mae = max((d["max_abs_error"] for d in r.drift if "max_abs_error" in d), default=None)
        lat = r.latency.ms if r.latency else None
        verdict = "meets every budget" if r.passed else "; ".join(r.verdict.failures)
        cls = "chosen" if r.candidate == chosen_key else ("" if r.passed else "fail")
        body.append(
            f"<tr class='{cls}'><td class=l>{html.escape(r.candidate)}</td><td>{r.size_bytes}</td>"
            f"<td>{r.gzip_bytes}</td><td>{r.sparsity:.2f}</td>"
            f"<td>{'-' if top1 is None else f'{top1:.4f}'}</td><td>{'-' if mae is None else f'{mae:.4g}'}</td>"
            f"<td>{'-' if lat is None else f'{lat:.3f}'}</td><td class=l>{html.escape(verdict)}</td></tr>"
        )
    return f"<table>{head}{''.join(body)}</table>"


def render_html(result) -> str:
    """The whole report as one self-contained HTML page (no scripts, no external files)."""
    out = ["<!doctype html><html><head><meta charset='utf-8'><title>mobilepre build report</title>"]
    out.append(f"<style>{_STYLE}</style></head><body><h1>mobilepre build report</h1>")
    src = result.source
    out.append(
        f"<p>Model <b>{html.escape(src['name'])}</b>: {src['parameters']} parameters, {src['macs']} MACs per image, "
        f"input {src['input_dtype']} {src['input_shape']}; identity <code>{src['identity'][:16]}…</code>. "
        f"{result.conversions} conversions and {result.validations} validations in all.</p>"
    )
    for warning in src.get("warnings", []):
        out.append(f"<p class=no>Warning: {html.escape(warning)}.</p>")
    for profile in result.profiles:
        status = "<span class=ok>bundle written</span>" if profile.passed else "<span class=no>no candidate within budget</span>"
        out.append(f"<h2>{html.escape(profile.name)}: {status}</h2><p>{html.escape(profile.profile.description)}</p>")
        for entry in profile.formats:
            chosen, closest = entry.chosen, entry.closest
            out.append(f"<h3>{entry.format}</h3>")
            if chosen:
                out.append(f"<p>Chosen: <b>{html.escape(chosen.candidate)}</b>.</p>")
            elif closest:
                out.append(
                    f"<p class=no>Closest: <b>{html.escape(closest.candidate)}</b>, failing "
                    f"{html.escape('; '.join(closest.verdict.failures))}.</p>"
                )
            out.append(_table(entry.tried, chosen.candidate if chosen else None))
            out.append(_chart(profile.profile, entry.tried, _drift_metric(entry.tried)))
    out.append("</body></html>\n")
    return "".join(out)
