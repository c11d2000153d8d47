"""Benchmark: weight clustering against pruning at equal drift, on what a download costs (gzip bytes),
from one build of the demo that measures every level of both."""

from __future__ import annotations

import tempfile
from pathlib import Path

from mobilepre.builder import BuildOptions, build

# Equal drift: the levels compared are those whose top-1 agreement with the float model is at least this.
MIN_TOP1 = 0.99

DESCRIPTION = (
    "One in-process build of the demo whose profile allows int8 TFLite and uint8 TF.js, pruning to 25, "
    "50 and 75% and clustering to 64, 16 and 8 shared values per kernel, each fine-tuned by the same "
    f"distillation (30 epochs on the 128 calibration digits). Drift on the 360 held-out digits. At equal "
    f"drift (top-1 agreement >= {MIN_TOP1}), the smallest gzip download of each family, as a ratio."
)


def run(progress) -> tuple[dict, list]:
    with tempfile.TemporaryDirectory(prefix="mobilepre-bench-clustering-") as tmp:
        profiles = Path(tmp) / "profiles"
        profiles.mkdir()
        (profiles / "both.toml").write_text(
            'name = "both"\ndescription = "clustering benchmark"\nformats = ["tflite", "tfjs"]\nquantization = ["int8", "uint8"]\n'
            'max_sparsity = 0.75\nmin_clusters = 8\nprefer = "size"\n[budget]\nmax_size = "16 MiB"\n'
        )
        result = build(BuildOptions(out=Path(tmp) / "out", profiles=profiles, latency_runs=3), progress)
    out = {"description": DESCRIPTION, "min_top1_agreement": MIN_TOP1, "formats": {}}
    for entry in result.profile("both").formats:
        rows = {
            t.candidate: {"bytes": t.size_bytes, "gzip_bytes": t.gzip_bytes, "max_abs_error": t.metric("max_abs_error"),
                          "top1_agreement": t.metric("top1_agreement")}
            for t in entry.tried
        }
        fair = {k: r for k, r in rows.items() if (r["top1_agreement"] or 0) >= MIN_TOP1}
        best = {}
        for family, test in (("pruning", lambda k: "-s" in k), ("clustering", lambda k: "-c" in k)):
            picks = [k for k in fair if test(k)]
            if picks:
                best[family] = min(picks, key=lambda k: fair[k]["gzip_bytes"])
        summary = {"candidates": rows, "smallest_at_equal_drift": best}
        if len(best) == 2:
            summary["clustering_over_pruning_gzip"] = round(rows[best["clustering"]]["gzip_bytes"] / rows[best["pruning"]]["gzip_bytes"], 4)
        out["formats"][entry.format] = summary
        progress(f"{entry.format}: {summary['smallest_at_equal_drift']} {summary.get('clustering_over_pruning_gzip')}")
    return out, []
