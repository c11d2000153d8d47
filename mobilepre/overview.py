"""The overview a reviewer reads first: one row per profile and format (chosen artifact, bytes, gzip,
latency with its source, drift per output, accuracy, verdict), failures first; with a baseline (a previous
build's output), the change of each figure. Shared by report.html and report.md (a pull-request comment
or a CI job summary).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from mobilepre.errors import MobilepreError, param
from mobilepre.results import LATENCY_MARGIN
from mobilepre.metrics import CLASS_SCORES, OutputKind
from mobilepre.output import NotAnOutput, read_output


@dataclass(frozen=True)
class Figures:
    """The figures of one chosen (or closest) artifact, now or in the baseline."""

    candidate: str
    size_bytes: int
    gzip_bytes: int
    latency_ms: float | None
    latency_source: str | None
    drift: tuple  # per output: {"name", "kind", metrics...}
    latency_interval: tuple | None = None  # the median's 95% interval, when timed here

    def drift_value(self, name: str) -> tuple[str, float] | None:
        """(metric, value) that sums up output `name`: top-1 agreement for class scores and pixel classes,
        else the max absolute error."""
        entry = next((d for d in self.drift if d.get("name") == name), None)
        return None if entry is None else _headline(entry)


def _headline(entry: dict) -> tuple[str, float] | None:
    kind = entry.get("kind")
    if kind in {str(k) for k in CLASS_SCORES} | {str(OutputKind.SEGMENTATION)} and entry.get("top1_agreement") is not None:
        return "top-1", float(entry["top1_agreement"])
    if entry.get("max_abs_error") is not None:
        return "max abs", float(entry["max_abs_error"])
    return None


@dataclass(frozen=True)
class Row:
    """One profile and format of the overview."""

    profile: str
    format: str
    passed: bool
    figures: Figures | None  # the chosen artifact, else the closest candidate
    verdict: str
    accuracy: float | None = None
    baseline: Figures | None = None
    notes: tuple = field(default=())


def rows(result, latencies: dict, baseline: dict | None = None) -> list[Row]:
    """Overview rows of a `BuildResult`, failures first. `latencies`: (profile, format) -> (ms, source) of
    the chosen artifact's latency figure (host figures are kept out of the byte-stable reports)."""
    out = []
    for profile in result.profiles:
        for entry in profile.formats:
            trial = entry.chosen or entry.closest
            figures = None
            accuracy = None
            if trial is not None and trial.size_bytes:
                ms, source = latencies.get((profile.name, entry.format), (None, None))
                interval = trial.latency.interval if trial.latency is not None and ms is not None else None
                figures = Figures(trial.candidate, trial.size_bytes, trial.gzip_bytes, ms, source, tuple(trial.drift), interval)
                accuracy = next((d["accuracy_candidate"] for d in trial.drift if d.get("accuracy_candidate") is not None), None)
            verdict = "ok" if entry.chosen else ("no candidate: " + "; ".join(trial.verdict.failures) if trial else "no candidate could be made")
            aside = profile.set_aside(entry.format)  # the other web runtime ships
            verdict = aside or verdict
            if trial is not None:
                verdict += trial.verdict.note
            prior = (baseline or {}).get((profile.name, entry.format))
            out.append(Row(profile.name, entry.format, entry.chosen is not None or aside is not None, figures, verdict, accuracy, prior))
    return sorted(out, key=lambda r: (r.passed, r.profile, r.format))


def latency_figures(result) -> dict:
    """(profile, format) -> (ms, source) of each chosen or closest artifact's latency figure."""
    out = {}
    for profile in result.profiles:
        for entry in profile.formats:
            trial = entry.chosen or entry.closest
            if trial is not None and trial.latency is not None and trial.latency.ms is not None:
                out[(profile.name, entry.format)] = (round(trial.latency.ms, 4), trial.latency.source)
    return out


# ------------------------------------------------------------------------------------------ baseline


def load_baseline(folder: Path) -> dict:
    """`--baseline DIR`: (profile, format) -> `Figures` of what that earlier build chose. Reads its
    report.json (bytes, gzip, drift) and timings.json (latency) through `output.read_output`; one line
    naming the folder when either is not a mobilepre build's."""
    folder = Path(folder)
    if not folder.is_dir():
        raise MobilepreError(f"{param('baseline')} {folder}: not a folder; give the output folder of an earlier `mobilepre build`")
    try:
        output = read_output(folder)
        latency = output.chosen_latencies()
    except NotAnOutput as why:
        raise MobilepreError(f"{param('baseline')} {folder}: {why}; give the output folder of an earlier `mobilepre build`") from None
    out = {}
    try:
        for profile in output.report.get("profiles", []):
            for entry in profile.get("formats", []):
                name = entry.get("chosen") or entry.get("closest")
                trial = next((t for t in entry.get("tried", []) if t.get("candidate") == name), None)
                if trial is None or not trial.get("bytes"):
                    continue
                key = (profile["name"], entry["format"])
                ms, source = latency.get(key, (None, None))
                out[key] = Figures(name, int(trial["bytes"]), int(trial["gzip_bytes"]), ms, source,
                                   tuple(d for d in trial.get("drift", []) if isinstance(d, dict)))
    except (AttributeError, KeyError, TypeError, ValueError):
        raise MobilepreError(f"{param('baseline')} {folder}: report.json does not have the layout of a mobilepre build report") from None
    return out


# ------------------------------------------------------------------------------------------ text


def size(n: int | None) -> str:
    return "-" if n is None else f"{n:,} B"


def change(now: float | None, before: float | None, unit: str = "B", digits: int = 0) -> str:
    """`+1,234 B (+2.3%)`, `-0.12 ms (-8.0%)`, `0` or `-` when either figure is missing."""
    if now is None or before is None:
        return "-"
    delta = now - before
    if abs(delta) < 10 ** -(digits + 1):
        return "0"
    text = f"{delta:+,.{digits}f}" + (f" {unit}" if unit else "")
    if before:
        text += f" ({delta / before:+.1%})"
    return text


def latency_text(figures: Figures | None) -> str:
    if figures is None or figures.latency_ms is None:
        return "-"
    spread = f", 95% {figures.latency_interval[0]:.2f}-{figures.latency_interval[1]:.2f}" if figures.latency_interval else ""
    return f"{figures.latency_ms:.2f} ms ({figures.latency_source}{spread})"


def drift_text(figures: Figures | None) -> str:
    if figures is None:
        return "-"
    parts = []
    for entry in figures.drift:
        headline = _headline(entry)
        if headline:
            metric, value = headline
            text = f"{entry.get('name')}: {metric} {value:.4f}" if metric == "top-1" else f"{entry.get('name')}: {metric} {value:.4g}"
            interval = (entry.get("intervals") or {}).get("top1_agreement") if metric == "top-1" else None
            parts.append(text + (f" (95% {interval[0]:.4f}-{interval[1]:.4f}, {entry.get('images')} images)" if interval else ""))
    return ", ".join(parts) or "-"


def bytes_line(spent: dict) -> str:
    """'52,841 B: weights 42,908, biases 692, ...; 1.23x the floor of 43,129 B (one byte per parameter)'."""
    parts = ", ".join(f"{label} {spent[key]:,}" for key, label in (("weights", "weights"), ("biases", "biases"),
                      ("quantization", "scales and zero points"), ("graph", "graph"), ("metadata", "metadata")))
    floor = spent.get("floor_bytes") or 0
    ratio = f"; {spent['total'] / floor:.2f}x the floor of {floor:,} B (one byte per parameter)" if floor else ""
    return f"{spent['total']:,} B: {parts}{ratio}"


def latency_change(figures: Figures | None, before: Figures | None) -> str:
    """The latency change, only between figures of the same source (a host and a device figure differ by
    more than the model does)."""
    if figures is None or before is None or figures.latency_source != before.latency_source:
        return "-"
    return change(figures.latency_ms, before.latency_ms, "ms", 2)


def drift_change(figures: Figures | None, before: Figures | None) -> str:
    if figures is None or before is None:
        return "-"
    parts = []
    for entry in figures.drift:
        now, then = _headline(entry), before.drift_value(entry.get("name"))
        if now and then and now[0] == then[0]:
            delta = change(now[1], then[1], "", 4).split(" (")[0]
            parts.append(f"{entry.get('name')}: {now[0]} {'unchanged' if delta == '0' else delta}")
    return ", ".join(parts) or "-"


def markdown(result, latencies: dict, baseline: dict | None = None) -> str:
    """report.md: the overview as a Markdown table (failures first), with the change since `baseline`."""
    table = rows(result, latencies, baseline)
    written = sum(p.passed for p in result.profiles)
    lines = [f"## mobilepre build: {written} of {len(result.profiles)} bundles", ""]
    src = result.source
    lines.append(f"Model `{src.get('name')}`: {src.get('parameters'):,} parameters, input {src.get('input_dtype')} "
                 f"{src.get('input_shape')}; {len(result.candidates)} candidates measured.")
    lines.append("")
    head = ["", "profile", "format", "chosen", "bytes", "gzip", "latency", "drift", "accuracy", "verdict"]
    if baseline is not None:
        head += ["Δ bytes", "Δ gzip", "Δ latency", "Δ drift"]
    lines.append("| " + " | ".join(head) + " |")
    lines.append("|" + "|".join("---" for _ in head) + "|")
    for row in table:
        f = row.figures
        cells = ["✅" if row.passed else "❌", row.profile, row.format, f"`{f.candidate}`" if f else "-",
                 size(f.size_bytes if f else None), size(f.gzip_bytes if f else None), latency_text(f), drift_text(f),
                 "-" if row.accuracy is None else f"{row.accuracy:.4f}", row.verdict]
        if baseline is not None:
            b = row.baseline
            cells += [change(f.size_bytes if f else None, b.size_bytes if b else None),
                      change(f.gzip_bytes if f else None, b.gzip_bytes if b else None),
                      latency_change(f, b),
                      drift_change(f, b)]
            if b is not None and f is not None and b.candidate != f.candidate:
                cells[3] += f" (was `{b.candidate}`)"
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    spent = [(p.name, f.chosen) for p in result.profiles for f in p.formats if f.chosen is not None and f.chosen.bytes_breakdown]
    if spent:
        lines += ["", "Where the bytes of each chosen .tflite go:", ""]
        lines += [f"- {name} `{trial.candidate}`: {bytes_line(trial.bytes_breakdown)}" for name, trial in spent]
    for p in result.profiles:
        for f in p.formats:
            lines += _latency_choice(p.name, f.format, f.to_dict())
    for warning in src.get("warnings", []):
        lines += ["", f"> warning: {warning}"]
    return "\n".join(lines) + "\n"


def _latency_choice(profile: str, fmt: str, entry: dict) -> list[str]:
    """report.md's lines on a latency choice: the run-off's paired ratios, and what was tied."""
    lines, runoff, keys = [], entry.get("runoff"), entry.get("latency_tied")
    if runoff:
        ratios = sorted(runoff["ratio_to_fastest"].items(), key=lambda kv: kv[1][0])
        lines += ["", f"{profile} ({fmt}) prefers latency; its passing candidates were timed against each other in "
                      f"{runoff['rounds']} interleaved rounds (time over the fastest's, paired per round, 95% interval): "
                      + ", ".join(f"`{k}` {r:.2f}x ({lo:.2f} to {hi:.2f})" for k, (r, lo, hi) in ratios) + "."]
    if keys:
        how = "in the run-off (interval reaching 1x" if runoff else "within the timings' 95% intervals ("
        lines += ["", f"{profile} ({fmt}): tied {how} or within {LATENCY_MARGIN:.0%} of the fastest), so the first "
                      f"in search order ships: {', '.join(f'`{k}`' for k in keys)}."]
    return lines

