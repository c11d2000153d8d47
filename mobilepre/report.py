"""report.html: the build's search shown to a person: the overview first (failures first), then per profile
a table of every candidate tried and charts of size against drift and latency, every budget drawn."""

from __future__ import annotations

import html
import math

from mobilepre import overview

_STYLE = """
body{font:14px/1.4 system-ui,sans-serif;margin:2em;color:#222;max-width:1500px}
table.overview td{white-space:nowrap}table.overview td.wrap{white-space:normal;min-width:9em}
table{border-collapse:collapse;margin:.5em 0 1.5em}td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}
th{background:#f3f3f3}td.l,th.l{text-align:left}tr.chosen td{background:#e8f6e8;font-weight:600}
tr.fail td{color:#777}table.overview tr.fail td{color:#b3261e;background:#fdf0ef}.ok{color:#176f2c}.no{color:#b3261e}svg{border:1px solid #ddd;background:#fff}
"""


def _drift_metric(rows) -> str:
    return "top1_agreement" if any(r.metric("top1_agreement") is not None for r in rows) else "cosine"


def _scatter(points: list, x_label: str, y_label: str, x_lines: list, y_lines: list) -> str:
    """SVG scatter of labelled points (label, x, y, passed) with dashed budget lines at x (`x_lines`:
    (value, label)) and y (`y_lines`); x on a log scale (sizes and budgets span decades)."""
    width, height, pad = 620, 320, 56
    if not points:
        return ""
    xs = [p[1] for p in points] + [v for v, _ in x_lines]
    ys = [p[2] for p in points] + [v for v, _ in y_lines] + [v for p in points if len(p) > 4 and p[4] for v in p[4]]
    lo, hi = math.floor(math.log10(min(xs))), math.ceil(math.log10(max(xs)))
    hi = hi + 1 if hi == lo else hi

    def sx(v):
        return pad + (width - 2 * pad) * (math.log10(v) - lo) / (hi - lo)
    y_lo, y_hi = min(ys), max(ys)
    if y_hi - y_lo < 1e-9:
        y_lo, y_hi = y_lo - 0.01 * (abs(y_lo) or 1), y_hi + 0.01 * (abs(y_hi) or 1)
    span = y_hi - y_lo

    def sy(v):
        return height - pad - (height - 2 * pad) * (v - y_lo) / span

    parts = [f'<svg width="{width}" height="{height}" role="img" aria-label="{html.escape(x_label)} against {html.escape(y_label)}">']
    parts.append(f'<line x1="{pad}" y1="{height - pad}" x2="{width - pad}" y2="{height - pad}" stroke="#999"/>')
    parts.append(f'<line x1="{pad}" y1="{pad}" x2="{pad}" y2="{height - pad}" stroke="#999"/>')
    parts.append(f'<text x="{width / 2}" y="{height - 12}" text-anchor="middle">{html.escape(x_label)}</text>')
    for exponent in range(lo, hi + 1):
        tick = sx(10**exponent)
        parts.append(f'<line x1="{tick:.1f}" y1="{height - pad}" x2="{tick:.1f}" y2="{height - pad + 4}" stroke="#999"/>')
        parts.append(f'<text x="{tick:.1f}" y="{height - pad + 16}" text-anchor="middle" font-size="11">{_bytes_label(10**exponent)}</text>')
    parts.append(f'<text x="14" y="{height / 2}" transform="rotate(-90 14 {height / 2})" text-anchor="middle">{html.escape(y_label)}</text>')
    parts.append(f'<text x="{pad - 4}" y="{sy(y_hi) + 4}" text-anchor="end" font-size="11">{y_hi:.4g}</text>')
    parts.append(f'<text x="{pad - 4}" y="{sy(y_lo) + 4}" text-anchor="end" font-size="11">{y_lo:.4g}</text>')
    for i, (value, label) in enumerate(x_lines):
        x = sx(value)
        parts.append(f'<line x1="{x:.1f}" y1="{pad}" x2="{x:.1f}" y2="{height - pad}" stroke="#b3261e" stroke-dasharray="5,4"/>')
        parts.append(f'<text x="{x + 3:.1f}" y="{pad + 10 + 12 * i}" font-size="11" fill="#b3261e">{html.escape(label)}</text>')
    for value, label in y_lines:
        y = sy(value)
        parts.append(f'<line x1="{pad}" y1="{y:.1f}" x2="{width - pad}" y2="{y:.1f}" stroke="#b3261e" stroke-dasharray="5,4"/>')
        parts.append(f'<text x="{width - pad}" y="{y - 4:.1f}" font-size="11" text-anchor="end" fill="#b3261e">{html.escape(label)}</text>')
    for i, (label, x_value, y_value, passed, *spread) in enumerate(points):
        colour = "#176f2c" if passed else "#b3261e"
        cx, cy = sx(x_value), sy(y_value)
        if spread and spread[0]:  # the figure's 95% interval as an error bar
            top, bottom = sy(spread[0][1]), sy(spread[0][0])
            parts.append(f'<path d="M{cx:.1f} {top:.1f}V{bottom:.1f}M{cx - 4:.1f} {top:.1f}h8M{cx - 4:.1f} {bottom:.1f}h8" '
                         f'stroke="{colour}" fill="none"><title>95% interval {spread[0][0]:.5g} to {spread[0][1]:.5g}</title></path>')
        parts.append(f'<circle cx="{cx:.1f}" cy="{cy:.1f}" r="5" fill="{colour}"><title>{html.escape(label)}: {x_value:,} B, {y_value:.5g}</title></circle>')
        dy = -8 if i % 2 == 0 else 14  # alternate above and below: neighbours at the same size stay readable
        parts.append(f'<text x="{cx + 6:.1f}" y="{cy + dy:.1f}" font-size="10" fill="{colour}">{html.escape(label)}</text>')
    parts.append("</svg>")
    return "".join(parts)


def _charts(profile, rows: list, metric: str) -> str:
    """Two labelled charts per format: bytes (and gzip bytes) against the drift metric, with the size, gzip
    and drift budgets; bytes against latency, with the latency budget, when latency was measured."""
    budget = profile.budget
    drift_limit = profile.drift.get("min_top1_agreement" if metric == "top1_agreement" else "min_cosine")
    usable = [r for r in rows if r.size_bytes and r.metric(metric) is not None]
    if not usable:
        return "<p>No candidate produced a measurable artifact.</p>"
    points = [(r.candidate, r.size_bytes, r.metric(metric), r.passed, _interval(r, metric)) for r in usable]
    points += [(r.candidate + " (gzip)", r.gzip_bytes, r.metric(metric), r.passed, _interval(r, metric)) for r in usable if budget.max_compressed_size]
    x_lines = [(budget.max_size, "max_size")]
    if budget.max_compressed_size:
        x_lines.append((budget.max_compressed_size, "max_compressed_size (gzip)"))
    y_lines = [(drift_limit, f"min {metric}")] if drift_limit is not None else []
    out = [_scatter(points, "artifact bytes (log scale)", metric, x_lines, y_lines)]
    timed = [(r.candidate, r.size_bytes, r.latency.ms, r.passed, r.latency.interval) for r in usable if r.latency and r.latency.ms is not None]
    if timed:
        limit = [(budget.max_latency_ms, f"max_latency_ms ({budget.latency_source})")] if budget.max_latency_ms else []
        out.append(_scatter(timed, "artifact bytes (log scale)", "latency ms", [(budget.max_size, "max_size")], limit))
    return "".join(out)


def _interval(trial, metric: str) -> tuple | None:
    """The 95% interval of `metric` of the first output that has it (the one `Trial.metric` shows)."""
    entry = next((d for d in trial.drift if metric in d), None)
    found = None if entry is None else (entry.get("intervals") or {}).get(metric)
    return None if found is None else (float(found[0]), float(found[1]))


def _bytes_label(n: int) -> str:
    for unit, size in (("GB", 10**9), ("MB", 10**6), ("kB", 10**3)):
        if n >= size:
            return f"{n // size} {unit}"
    return f"{n} B"


def _table(rows: list, chosen_key: str | None) -> str:
    head = "<tr><th class=l>candidate</th><th>bytes</th><th>gzip</th><th>sparsity</th><th>top-1 (95%)</th><th>max abs err</th><th>latency ms (95%)</th><th class=l>verdict</th></tr>"
    body = []
    for r in rows:
        top1 = r.metric("top1_agreement")
        mae = max((d["max_abs_error"] for d in r.drift if "max_abs_error" in d), default=None)
        lat = r.latency.ms if r.latency else None
        top1_spread = _interval(r, "top1_agreement")
        lat_spread = r.latency.interval if r.latency and lat is not None else None
        verdict = ("meets every budget" if r.passed else "; ".join(r.verdict.failures)) + r.verdict.note
        verdict += "".join(f"; {w}" for w in r.verdict.warnings)
        cls = "chosen" if r.candidate == chosen_key else ("" if r.passed else "fail")
        body.append(
            f"<tr class='{cls}'><td class=l>{html.escape(r.candidate)}</td><td>{r.size_bytes:,}</td>"
            f"<td>{r.gzip_bytes:,}</td><td>{r.sparsity:.2f}</td>"
            f"<td>{'-' if top1 is None else f'{top1:.4f}'}{f' ({top1_spread[0]:.4f}-{top1_spread[1]:.4f})' if top1_spread else ''}</td>"
            f"<td>{'-' if mae is None else f'{mae:.4g}'}</td>"
            f"<td>{'-' if lat is None else f'{lat:.3f}'}{f' ({lat_spread[0]:.3f}-{lat_spread[1]:.3f})' if lat_spread else ''}</td>"
            f"<td class=l>{html.escape(verdict)}</td></tr>"
        )
    return f"<table>{head}{''.join(body)}</table>"


def _metadata_line(trial) -> str:
    """What SDK metadata the chosen artifact carries, or why it carries none."""
    metadata = trial.metadata or {}
    if metadata.get("note"):
        return f"<span class=no>No SDK metadata: {html.escape(metadata['note'])}.</span>"
    if metadata.get("carries"):
        return f"SDK metadata: {html.escape(', '.join(metadata['carries']))}."
    return ""


def _two_lines(text: str) -> str:
    """`-84,848 B (-47.8%)` as the change over its percentage, so the overview fits a screen's width."""
    value, _, share = text.partition(" (")
    return html.escape(value) + (f"<br><small>({html.escape(share)}</small>" if share else "")


def _overview(result, latencies: dict, baseline: dict | None) -> str:
    """The table a reviewer reads first: one row per profile and format, failures first."""
    head = ["", "profile", "format", "chosen", "bytes", "gzip", "latency (source)", "drift", "accuracy", "verdict"]
    if baseline is not None:
        head += ["Δ bytes", "Δ gzip", "Δ latency", "Δ drift"]
    cells = "".join(f"<th class=l>{h}</th>" if h in ("profile", "format", "chosen", "verdict", "drift", "Δ drift") else f"<th>{h}</th>" for h in head)
    body = []
    for row in overview.rows(result, latencies, baseline):
        f = row.figures
        mark = "<span class=ok>&#10003;</span>" if row.passed else "<span class=no>&#10007;</span>"
        chosen = html.escape(f.candidate) if f else "-"
        if not row.passed and f:
            chosen += " <small>(closest)</small>"
        tds = [mark, f"<a href='#{html.escape(row.profile)}'>{html.escape(row.profile)}</a>", row.format, chosen,
               overview.size(f.size_bytes if f else None), overview.size(f.gzip_bytes if f else None), overview.latency_text(f),
               html.escape(overview.drift_text(f)), "-" if row.accuracy is None else f"{row.accuracy:.4f}", html.escape(row.verdict)]
        if baseline is not None:
            b = row.baseline
            was = f" <small>(was {html.escape(b.candidate)})</small>" if b and f and b.candidate != f.candidate else ""
            tds[3] += was
            tds += [_two_lines(overview.change(f.size_bytes if f else None, b.size_bytes if b else None)),
                    _two_lines(overview.change(f.gzip_bytes if f else None, b.gzip_bytes if b else None)),
                    _two_lines(overview.latency_change(f, b)), html.escape(overview.drift_change(f, b))]
        left, wrap = {1, 2, 3, 7, 9, 13}, {3, 7, 9, 13}
        body.append(f"<tr class='{'' if row.passed else 'fail'}'>" + "".join(
            f"<td class='l{' wrap' if i in wrap else ''}'>{t}</td>" if i in left else f"<td>{t}</td>" for i, t in enumerate(tds)) + "</tr>")
    return f"<h2>Overview</h2><table class=overview><tr>{cells}</tr>{''.join(body)}</table>"


def render_html(result, latencies: dict | None = None, baseline: dict | None = None) -> str:
    """The whole report as one self-contained HTML page (no scripts, no external files): the overview
    (with the change since `baseline`, a previous build's figures), then each profile in detail."""
    out = ["<!doctype html><html><head><meta charset='utf-8'><title>mobilepre build report</title>"]
    out.append(f"<style>{_STYLE}</style></head><body><h1>mobilepre build report</h1>")
    src = result.source
    out.append(
        f"<p>Model <b>{html.escape(src['name'])}</b>: {src['parameters']:,} parameters, {src['macs']:,} MACs per image, "
        f"input {src['input_dtype']} {src['input_shape']}; identity <code>{src['identity'][:16]}…</code>. "
        f"{len(result.candidates)} candidates measured.</p>"
    )
    for warning in src.get("warnings", []):
        out.append(f"<p class=no>Warning: {html.escape(warning)}.</p>")
    out.append(_overview(result, latencies if latencies is not None else overview.latency_figures(result), baseline))
    for profile in result.profiles:
        status = "<span class=ok>bundle written</span>" if profile.passed else "<span class=no>no candidate within budget</span>"
        out.append(f"<h2 id='{html.escape(profile.name)}'>{html.escape(profile.name)}: {status}</h2><p>{html.escape(profile.profile.description)}</p>")
        if profile.web is not None:
            out.append(f"<p>Web runtime: <b>{html.escape(profile.web['format'])}</b>, {html.escape(profile.web['why'])}.</p>")
        for entry in profile.formats:
            chosen, closest = entry.chosen, entry.closest
            out.append(f"<h3>{entry.format}</h3>")
            if chosen:
                out.append(f"<p>Chosen: <b>{html.escape(chosen.candidate)}</b>. {_metadata_line(chosen)}</p>")
                if chosen.bytes_breakdown:
                    out.append(f"<p>Where its bytes go: {html.escape(overview.bytes_line(chosen.bytes_breakdown))}.</p>")
            elif closest:
                out.append(
                    f"<p class=no>Closest: <b>{html.escape(closest.candidate)}</b>, failing "
                    f"{html.escape('; '.join(closest.verdict.failures))}.</p>"
                )
            out.append(_table(entry.tried, chosen.candidate if chosen else None))
            out.append(_charts(profile.profile, entry.tried, _drift_metric(entry.tried)))
    out.append("</body></html>\n")
    return "".join(out)
