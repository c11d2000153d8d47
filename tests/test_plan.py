"""`mobilepre plan`: the CI build matrix, by profile or by groups of profiles that share candidates."""

import json

import pytest

from mobilepre.candidates import candidates_for
from mobilepre.errors import MobilepreError
from mobilepre.plan import plan
from mobilepre.profiles import default_profiles_dir, load_profiles
from tests.conftest import run_cli
from tests.test_build import write_profile


def test_one_cell_per_model_and_profile_in_the_form_github_actions_takes(tmp_path):
    (tmp_path / "a.keras").write_bytes(b"x")
    (tmp_path / "b_model").mkdir()
    result = run_cli("plan", tmp_path / "a.keras", tmp_path / "b_model", "--json")
    assert result.returncode == 0, result.stderr
    assert len(result.stdout.strip().splitlines()) == 1  # one line, for $GITHUB_OUTPUT
    matrix = json.loads(result.stdout)
    assert list(matrix) == ["include"]  # other top-level keys would become matrix dimensions
    shipped = [p.name for p in load_profiles(default_profiles_dir())]
    assert [(c["name"], c["profiles"]) for c in matrix["include"]] == [(m, p) for m in ("a", "b_model") for p in shipped]
    assert len({c["part"] for c in matrix["include"]}) == len(matrix["include"])


def test_shared_groups_join_profiles_that_share_a_candidate():
    result = plan(by="shared")
    profiles = {p.name: p for p in load_profiles(default_profiles_dir())}
    keys = {n: {c.key for cs in candidates_for(p).values() for c in cs} for n, p in profiles.items()}
    groups = [c.profiles for c in result.cells]
    assert sorted(n for g in groups for n in g) == sorted(profiles)  # every profile once
    for i, a in enumerate(groups):
        for b in groups[i + 1:]:
            assert not any(keys[x] & keys[y] for x in a for y in b)  # no candidate is built in two jobs
    assert len(groups) < len(profiles)
    assert all(c.candidates == len(set().union(*(keys[n] for n in c.profiles))) for c in result.cells)


def test_a_cell_builds_with_the_profiles_it_names(tmp_path):
    write_profile(tmp_path / "p", "one", 'formats = ["tflite"]\nquantization = ["float32"]\n[budget]\nmax_size = "1 MiB"\n')
    write_profile(tmp_path / "p", "two", 'formats = ["tfjs"]\nquantization = ["float32"]\n[budget]\nmax_size = "1 MiB"\n')
    cells = plan(profiles=tmp_path / "p", by="shared").cells
    assert [c.profiles for c in cells] == [("one",), ("two",)]
    assert cells[0].to_dict() == {"candidates": 1, "model": "", "name": "demo", "part": "demo--one", "profiles": "one"}


def test_bad_plans_are_one_line(tmp_path):
    with pytest.raises(MobilepreError, match="no such model"):
        plan([tmp_path / "missing.keras"])
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "m.keras").write_bytes(b"x")
    (tmp_path / "m.keras").write_bytes(b"x")
    with pytest.raises(MobilepreError, match="both named m"):
        plan([tmp_path / "m.keras", tmp_path / "x" / "m.keras"])
    result = run_cli("plan", "--by", "model")
    assert result.returncode == 2 and "--by 'model'" in result.stderr


def test_the_readme_workflow_is_valid_yaml_and_uses_only_options_that_exist():
    import re

    import yaml

    from tests.conftest import REPO

    readme = (REPO / "docs" / "ci.md").read_text()
    block = readme.split("A complete workflow:", 1)[1].split("```yaml\n", 1)[1].split("```", 1)[0]
    workflow = yaml.safe_load(block)
    jobs = workflow["jobs"]
    assert list(jobs) == ["plan", "build", "merge"]
    assert jobs["build"]["strategy"]["matrix"] == "${{ fromJSON(needs.plan.outputs.matrix) }}"
    assert jobs["merge"]["needs"] == ["plan", "build"]
    cache_step = next(s for s in jobs["build"]["steps"] if s.get("uses", "").startswith("actions/cache@"))
    assert cache_step["with"]["path"] == "~/.cache/mobilepre"  # where the CLI's default cache is
    commands = [line for job in jobs.values() for step in job["steps"] for line in [step.get("run", "")] if "mobilepre " in line]
    used = {}
    for command in commands:
        for match in re.finditer(r"mobilepre (plan|build|merge|check)\b([^\n|;]*(?:\n[^\n]*)?)", command):
            used.setdefault(match.group(1), set()).update(re.findall(r"(--[a-z-]+)", match.group(2)))
    assert set(used) == {"plan", "build", "merge", "check"}
    for name, flags in used.items():
        help_text = run_cli(name, "--help").stdout
        for flag in flags:
            assert flag in help_text, f"the workflow in docs/ci.md passes {flag} to mobilepre {name}, which has no such option"
