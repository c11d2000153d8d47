"""Write tests/data/demo_digests.json (the sha256 of every bundle file of the demo build, SOURCE_DATE_EPOCH=1, an
empty cache) and tests/data/demo_report.json (its report.json), which tests/test_clients.py checks a build against. Run it when a change is meant to change
the demo's bytes, and say why in the commit and in the file's `_about`:

    .venv/bin/python scripts/demo_digests.py "why the bytes changed"
"""

import json
import os
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def main(why: str) -> None:
    os.environ["SOURCE_DATE_EPOCH"] = "1"
    from mobilepre.builder import BuildOptions, build
    from tests.test_clients import demo_digests, demo_report

    with tempfile.TemporaryDirectory() as tmp:
        result = build(BuildOptions(out=Path(tmp) / "out", cache=Path(tmp) / "cache"))
        if result.exit_code != 0:
            raise SystemExit(f"the demo build failed (exit {result.exit_code})")
        digests = demo_digests(Path(tmp) / "out")
        report = demo_report(Path(tmp) / "out")
    target = REPO / "tests" / "data" / "demo_digests.json"
    about = json.loads(target.read_text())["_about"] if target.exists() else ""
    target.write_text(json.dumps({"_about": f"{about} {why}".strip(), "digests": digests}, indent=2) + "\n")
    (REPO / "tests" / "data" / "demo_report.json").write_text(json.dumps(report, indent=1, sort_keys=True) + "\n")
    print(f"wrote {len(digests)} digests to {target.relative_to(REPO)} and the report to tests/data/demo_report.json")


if __name__ == "__main__":
    main(" ".join(sys.argv[1:]))
