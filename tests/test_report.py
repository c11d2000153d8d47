"""What a build shows a person: the overview (report.html, report.md) with failures first and the change
since a baseline, the progress on stderr, errors as JSON with --json, and the smaller build options
(class names, camera-ready input, TF.js shard size)."""

import json
import os
import re

import numpy as np
import pytest

from mobilepre.builder import build
from mobilepre.errors import MobilepreError
from tests.conftest import run_cli, warm_options
from tests.test_build import write_profile

FAST = {**os.environ, "MOBILEPRE_ISOLATE_LOADS": "0"}
FLOAT32 = 'formats = ["tflite"]\nquantization = ["float32", "float16"]\n'


@pytest.fixture(scope="module")
def two_builds(tmp_path_factory):
    """A first build (the baseline), then a second with a tighter size budget and one profile nothing fits."""
    root = tmp_path_factory.mktemp("overview")
    first, second = root / "first", root / "second"
    write_profile(first, "phone", FLOAT32 + '[budget]\nmax_size = "1 MiB"\n')
    build(warm_options(out=root / "baseline", profiles=first, latency_runs=5))
    write_profile(second, "phone", FLOAT32 + '[budget]\nmax_size = "120 KiB"\n')  # float32 (178 kB) no longer fits
    write_profile(second, "watch", 'formats = ["tflite"]\nquantization = ["float32"]\n[budget]\nmax_size = "10 KiB"\n')
    result = build(warm_options(out=root / "out", profiles=second, latency_runs=5, baseline=root / "baseline"))
    return result, root / "out"


@pytest.mark.slow
def test_report_md_shows_failures_first_and_the_change_since_the_baseline(two_builds):
    result, out = two_builds
    assert result.exit_code == 1
    text = (out / "report.md").read_text()
    rows = [line for line in text.splitlines() if line.startswith("| ✅") or line.startswith("| ❌")]
    assert rows[0].startswith("| ❌ | watch |") and rows[1].startswith("| ✅ | phone |")
    assert "no candidate: max_size" in rows[0]
    phone = rows[1].split(" | ")
    assert "`tflite-float16` (was `tflite-float32`)" in rows[1]
    size_change = phone[10]
    before, now = 177529, int(phone[4].replace(",", "").removesuffix(" B"))  # the demo's float32 .tflite
    assert re.fullmatch(r"-[0-9,]+ B \(-[0-9.]+%\)", size_change) and int(size_change.split()[0].replace(",", "")) < 0
    assert now < before
    assert "digits_cnn: top-1" in phone[7] and "Δ bytes" in text
    assert "1 of 2 bundles" in text


def test_report_html_opens_with_the_overview_and_draws_every_budget(two_builds):
    _, out = two_builds
    page = (out / "report.html").read_text()
    overview = page[page.index("<h2>Overview</h2>"): page.index("</table>", page.index("<h2>Overview</h2>"))]
    assert overview.index(">watch<") < overview.index(">phone<")  # failures first
    assert "(was tflite-float32)" in overview and "Δ bytes" in overview
    assert page.index("<h2>Overview</h2>") < page.index("<h2 id='phone'>")
    assert ">max_size</text>" in page and "max_latency_ms" not in page  # no latency budget: no latency line
    assert re.search(r"<text [^>]*>tflite-float16</text>", page)  # points are labelled


def test_report_json_keeps_the_choice_a_latency_profile_made(tmp_path):
    profiles = tmp_path / "profiles"
    write_profile(profiles, "fast", 'formats = ["tflite"]\nquantization = ["float32", "int8"]\nprefer = "latency"\n'
                  '[budget]\nmax_size = "1 MiB"\nmax_latency_ms = 1000.0\n')
    result = build(warm_options(out=tmp_path / "out", profiles=profiles, latency_runs=5))
    chosen = result.profile("fast").formats[0].chosen.candidate
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    manifest = json.loads((tmp_path / "out" / "fast" / "manifest.json").read_text())
    assert report["profiles"][0]["formats"][0]["chosen"] == chosen == manifest["artifacts"][0]["candidate"]


def test_a_baseline_that_is_not_a_build_output_is_one_line(tmp_path):
    (tmp_path / "empty").mkdir()
    for folder, says in ((tmp_path / "missing", "not a folder"), (tmp_path / "empty", "report.json")):
        result = run_cli("build", "--out", tmp_path / "out", "--baseline", folder, "--profile", "npu-int8", env=FAST)
        assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1 and says in result.stderr, result.stderr
        assert not (tmp_path / "out").exists()


def test_progress_on_stderr_is_lines_in_a_log_and_nothing_when_quiet(tmp_path, fresh_cache):
    result = run_cli("build", "--out", tmp_path / "a", "--profile", "npu-int8", env=FAST)
    assert result.returncode == 0, result.stderr
    lines = result.stderr.splitlines()
    assert any(re.match(r"mobilepre: \[\d+ s\] \(\d+/\d+\) converting tflite-int8-uint8io", line) for line in lines), lines
    assert any("validating tflite-int8-uint8io in LiteRT on 360 images" in line for line in lines)
    assert "1 of 1 bundles written to" in result.stdout
    assert not re.search(r"\d\.\d+e[+-]\d", result.stdout + result.stderr)  # never scientific notation
    quiet = run_cli("build", "--out", tmp_path / "b", "--profile", "npu-int8", "--quiet", env=FAST)
    assert quiet.returncode == 0 and quiet.stderr == ""


def test_errors_are_json_on_stdout_with_json(tmp_path):
    result = run_cli("build", "--out", tmp_path / "out", "--profile", "nope", "--json", env=FAST)
    assert result.returncode == 2
    assert json.loads(result.stdout) == {"error": json.loads(result.stdout)["error"], "exit_code": 2}
    assert "nope" in json.loads(result.stdout)["error"] and "nope" in result.stderr
    usage = run_cli("validate", "a", "b", "--data", "c", "--min-top1", "2", "--json")
    assert usage.returncode == 2 and json.loads(usage.stdout)["exit_code"] == 2
    assert "--min-top1 2: expected a number from 0 to 1" in json.loads(usage.stdout)["error"]
    typo = run_cli("build", "--jobs", "many", "--json")
    assert typo.returncode == 2 and "--jobs" in json.loads(typo.stdout)["error"]


def test_class_names_file_must_name_every_class(tmp_path):
    names = tmp_path / "names.txt"
    names.write_text("zero\none\n")
    result = run_cli("build", "--out", tmp_path / "out", "--profile", "npu-int8", "--class-names", names, env=FAST)
    assert result.returncode == 2 and "2 names" in result.stderr and "10 classes" in result.stderr
    names.write_text("a\n\nb\n")
    result = run_cli("build", "--out", tmp_path / "out", "--profile", "npu-int8", "--class-names", names, env=FAST)
    assert result.returncode == 2 and "line 2: empty name" in result.stderr
    names.write_text("".join(f"digit {d}\n" for d in range(10)))
    result = run_cli("build", "--out", tmp_path / "out", "--profile", "npu-int8", "--class-names", names, env=FAST)
    assert result.returncode == 0, result.stderr
    manifest = json.loads((tmp_path / "out" / "npu-int8" / "manifest.json").read_text())
    assert manifest["source"]["class_names"][3] == "digit 3"


@pytest.fixture(scope="module")
def grey_float_model(tmp_path_factory, keras):
    root = tmp_path_factory.mktemp("grey")
    keras.utils.set_random_seed(2)
    inputs = keras.Input((12, 12, 1))
    x = keras.layers.Conv2D(32, 3, activation="relu")(inputs)  # 1.7 kB of float32 weights: two 1 KiB shards
    model = keras.Model(inputs, keras.layers.Dense(3, activation="softmax")(keras.layers.GlobalAveragePooling2D()(x)))
    model.save(root / "grey.keras")
    np.save(root / "grey.npy", np.random.default_rng(1).integers(0, 256, (24, 12, 12, 1)).astype(np.uint8))  # raw pixels: --frontend
    profiles = root / "profiles"
    write_profile(profiles, "one", 'formats = ["tflite", "tfjs"]\nquantization = ["float32"]\n[budget]\nmax_size = "1 MiB"\n')
    return root, model


@pytest.mark.slow
@pytest.mark.parametrize("rgb", [True, False])
def test_a_grayscale_model_bundle_takes_camera_rgb_unless_told(grey_float_model, tmp_path, rgb):
    root, model = grey_float_model
    result = build(warm_options(out=tmp_path / "out", model=root / "grey.keras", profiles=root / "profiles",
                                calibration=root / "grey.npy", frontend=True, rgb_input=rgb, latency_runs=1,
                                allow_degenerate_reference=True, shard_size=1024))
    assert result.exit_code == 0
    manifest = json.loads((tmp_path / "out" / "one" / "manifest.json").read_text())
    channels = 3 if rgb else 1
    for artifact in manifest["artifacts"]:
        (inp,) = artifact["io"]["inputs"]
        assert inp["dtype"] == "uint8" and inp["shape"][-1] == channels and inp["color_space"] == ("RGB" if rgb else "GRAYSCALE")
        assert artifact["drift"][0]["max_abs_error"] < 1e-4  # the reference ran behind the same stages
    assert manifest["source"]["stages"] == {"rescale": [0.0, 1.0], "luma": rgb}
    model_json = json.loads((tmp_path / "out" / "one" / "tfjs" / "model.json").read_text())
    assert model_json["userDefinedMetadata"]["mobilepre"]["input"]["luma_in_model"] is rgb
    assert sum(len(group["paths"]) for group in model_json["weightsManifest"]) > 1  # --shard-size 1 KiB: several shards
    check = run_cli("check", tmp_path / "out", "--profiles", root / "profiles", "--data", root / "grey.npy",
                    "--reference", root / "grey.keras", "--no-measure", env=FAST)
    assert check.returncode == 0, check.stdout + check.stderr


@pytest.mark.slow
def test_prune_says_where_its_agreement_was_measured(tmp_path):
    from mobilepre import demo

    result = run_cli("prune", demo.model_path(), "--sparsity", "0.3", "--out", tmp_path / "p.keras", "--calibration",
                     demo.calibration_path(), "--epochs", "0", env=FAST)
    assert result.returncode == 0, result.stderr
    assert "pass --validation DATA for a held-out figure" in result.stdout
    held = run_cli("prune", demo.model_path(), "--sparsity", "0.3", "--out", tmp_path / "q.keras", "--calibration",
                   demo.calibration_path(), "--validation", demo.validation_path(), "--epochs", "0", "--json", env=FAST)
    report = json.loads(held.stdout)
    assert report["held_out_images"] == 360 and 0.5 < report["held_out_top1_agreement"] <= 1.0


def test_unknown_tolerance_ranges_and_browser_profiles_are_refused(tmp_path):
    from mobilepre.profiles import load_profiles

    write_profile(tmp_path, "mixed-latency", 'formats = ["tflite", "tfjs"]\nquantization = ["float32"]\n'
                  '[budget]\nmax_size = "1 MiB"\nmax_latency_ms = 10.0\nlatency_source = "browser"\n')
    with pytest.raises(MobilepreError, match="latency_source 'browser' times web bundles"):
        load_profiles(tmp_path)
    (tmp_path / "mixed-latency.toml").unlink()
    write_profile(tmp_path, "host-backend", 'formats = ["tfjs"]\nquantization = ["float32"]\n'
                  '[budget]\nmax_size = "1 MiB"\nbrowser_backend = "webgl"\n')
    with pytest.raises(MobilepreError, match="browser_backend is only used when latency_source = 'browser'"):
        load_profiles(tmp_path)


PAGE_CHECK = """
import puppeteer from 'puppeteer-core';
const [chromium, url, shot] = process.argv.slice(1);
const browser = await puppeteer.launch({ executablePath: chromium, headless: true,
  args: ['--no-sandbox', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'] });
const page = await browser.newPage();
await page.setViewport({ width: 1400, height: 900 });
await page.goto(url, { waitUntil: 'load' });
const seen = await page.evaluate(() => {
  const table = document.querySelector('table.overview');
  const box = table.getBoundingClientRect();
  const rows = [...table.querySelectorAll('tr')].slice(1).map((tr) => [...tr.cells].map((td) => td.textContent.trim()));
  const labels = [...document.querySelectorAll('svg text')].map((t) => t.textContent);
  return { top: box.top, bottom: box.bottom, width: box.width, rows, labels, overflow: document.documentElement.scrollWidth };
});
await page.screenshot({ path: shot });
await browser.close();
process.stdout.write(JSON.stringify(seen));
"""


def test_report_html_in_chromium_shows_the_overview_first(two_builds, tmp_path):
    """The report as a reviewer sees it: rendered by Chromium, the overview is on the first screen, the
    failing profile on its first row, and the charts' points and budget lines carry labels."""
    import subprocess

    from mobilepre.runtimes import check_chromium, runner_dir

    _, out = two_builds
    shot = tmp_path / "report.png"
    done = subprocess.run(["node", "--input-type=module", "-e", PAGE_CHECK, check_chromium(), (out / "report.html").as_uri(), str(shot)],
                          capture_output=True, text=True, timeout=120, cwd=runner_dir())
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout)
    assert 0 < seen["top"] < 300 and seen["bottom"] < 900  # on the first screen of a 1400x900 window
    assert seen["rows"][0][1] == "watch" and seen["rows"][1][1] == "phone"
    assert seen["overflow"] <= 1400  # the overview fits the width: no sideways scrolling
    assert {"max_size", "tflite-float16", "tflite-float32"} <= set(seen["labels"])
    assert shot.stat().st_size > 10_000
