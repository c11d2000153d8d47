"""The documentation cannot drift from the tool: the CLI reference in docs/ is what the CLI itself
generates, and every relative link in the README and docs/ leads to a file that exists."""

import re
import shlex
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_the_cli_reference_is_what_the_cli_generates(tmp_path):
    recipe = re.search(r"^docs:.*\n\t\$\(VENV\)/bin/typer (.+) --output docs/cli\.md$", (REPO / "Makefile").read_text(), re.M)
    assert recipe, "the Makefile's docs target is not `typer ... --output docs/cli.md`"
    fresh = tmp_path / "cli.md"
    result = subprocess.run([str(Path(sys.executable).with_name("typer")), *shlex.split(recipe.group(1)), "--output", str(fresh)],
                            cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert fresh.read_text() == (REPO / "docs" / "cli.md").read_text(), "docs/cli.md is stale: run `make docs` and commit it"


def test_every_relative_link_in_the_docs_leads_to_a_file():
    pages = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
    broken = []
    for page in pages:
        for target in re.findall(r"\]\(([^)\s]+)\)", page.read_text()):
            path = target.split("#", 1)[0]
            if path and not re.match(r"[a-z]+:", path) and not (page.parent / path).exists():
                broken.append(f"{page.relative_to(REPO)} -> {target}")
    assert not broken
