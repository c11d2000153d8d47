"""The `mobilepre` command line: parse arguments, call one library function, print its result."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from mobilepre.builder import BuildOptions
from mobilepre.cache import DEFAULT_MAX_BYTES, CandidateCache, code_fingerprint, default_cache_dir
from mobilepre.builder import build as run_build
from mobilepre.check import check as run_check
from mobilepre.check_files import check_files
from mobilepre.sign import sign_bundles
from mobilepre.compress import prune_file, quantize_file
from mobilepre.config import load_build_config
from mobilepre.data import DataOptions, parse_range
from mobilepre.deliver import deliver
from mobilepre.errors import MobilepreError, one_line
from mobilepre.frontend import FrontendSpec, Normalization, parse_features, parse_input_shape, write_frontend
from mobilepre.fsutil import atomic_file
from mobilepre.merge import merge as run_merge
from mobilepre.plan import plan as make_plan
from mobilepre.profiles import BROWSER_BACKENDS, default_profiles_dir, format_size, load_profiles, parse_size
from mobilepre.progress import reporter_for
from mobilepre.validate import validate_files
from mobilepre.versions import package_version

app = typer.Typer(
    name="mobilepre",
    help="Preprocessing inside Keras image models, compression, drift validation and size-budgeted bundles.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)


def _version(value: bool):
    if value:
        # The code's hash too: an edited checkout of one release is another tool (build plugins re-run on it).
        typer.echo(f"mobilepre {package_version('mobilepre')} (code {code_fingerprint()[:12]})")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
    run_timeout: Annotated[
        Optional[float],
        typer.Option("--run-timeout", min=1.0, help="Seconds one run of an artifact (LiteRT or TF.js) may take; default: a second per image, at least 60."),
    ] = None,
):
    """Exit codes: 0 success, 1 a budget, tolerance or integrity check failed, 2 bad input or usage."""
    if run_timeout is not None:
        os.environ["MOBILEPRE_RUN_TIMEOUT"] = str(run_timeout)  # read by mobilepre.runtimes, here and in children


def _emit(result, as_json: bool) -> None:
    if as_json:
        typer.echo(json.dumps(result.to_dict(), indent=2, sort_keys=True))
    else:
        typer.echo(result.to_text())


def _say_failure(reason: str | None) -> None:
    """A failed budget or check also says one line on stderr: the reason build tools show (Gradle, Xcode, npm)."""
    if reason:
        typer.echo(f"mobilepre: failed: {one_line(reason)}", err=True)


@app.command()
def frontend(
    out: Annotated[Path, typer.Option("--out", help="Where to write the front-end model (.keras).")],
    input_shape: Annotated[str, typer.Option(help="Image size the front-end takes, H,W,C.")] = "224,224,3",
    sigma: Annotated[float, typer.Option(help="Sigma, in pixels, of the initial Gaussian denoise kernel.")] = 1.0,
    denoise: Annotated[bool, typer.Option("--denoise/--no-denoise", help="Include the 3x3 noise-reduction stage.")] = True,
    features: Annotated[
        str, typer.Option(help="Feature-extraction convolutions as FILTERS:KERNEL pairs, or 'none'.")
    ] = "16:5,32:3",
    normalize: Annotated[
        str, typer.Option(help="batchnorm (default), sigmoid (1x1 conv + sigmoid, the weaker choice) or none.")
    ] = "batchnorm",
    l2: Annotated[float, typer.Option(help="L2 regularisation factor of the denoise kernel.")] = 0.01,
    uint8_input: Annotated[
        bool,
        typer.Option("--uint8-input/--float-input", help="Take raw 0..255 uint8 pixels and rescale inside the model."),
    ] = True,
    rgb_input: Annotated[
        bool,
        typer.Option("--rgb-input/--gray-input", help="A 1-channel front-end takes RGB pixels and turns them into luma inside (BT.601); --gray-input keeps 1 channel."),
    ] = True,
    force: Annotated[bool, typer.Option("--force", help="Replace an existing front-end file.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
):
    """Build the convolutional preprocessing front-end as a Keras model."""
    if normalize not in {n.value for n in Normalization}:
        raise MobilepreError(f"--normalize {normalize!r}: expected one of batchnorm, sigmoid, none")
    spec = FrontendSpec(
        input_shape=parse_input_shape(input_shape),
        uint8_input=uint8_input,
        denoise=denoise,
        sigma=sigma,
        l2=l2,
        features=parse_features(features),
        normalize=Normalization(normalize),
        rgb_input=rgb_input,
    )
    _emit(write_frontend(spec, out, force), as_json)


CustomObjectsOption = Annotated[
    Optional[list[str]],
    typer.Option("--custom-objects", metavar="MODULE", help="A module (dotted name from this folder) or .py file defining the model's own Keras classes; repeatable; needs --trust-model."),
]
TrustOption = Annotated[
    bool,
    typer.Option("--trust-model", help="Load the model even if the scan finds code in it (Lambda layers, unknown modules). Only for models you would run as code."),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print the result as JSON.")]
ForceOption = Annotated[bool, typer.Option("--force", help="Replace an existing output.")]
RangeOption = Annotated[str, typer.Option(help="Float models: map decoded pixels 0..255 to LOW:HIGH.")]
ChannelsOption = Annotated[
    bool, typer.Option("--convert-channels", help="Convert grey <-> RGB images instead of refusing a channel mismatch.")
]
ShapeOption = Annotated[Optional[str], typer.Option(help="H,W,C for models with dynamic input sizes.")]


def _names(values: list[str] | None) -> tuple[str, ...] | None:
    """Repeated options whose values may also list names separated by commas."""
    if not values:
        return None
    return tuple(name.strip() for value in values for name in value.split(",") if name.strip())


def _data(path, input_range: str, convert_channels: bool, labels=None, limit: int | None = 500):
    return DataOptions(path=path, input_range=parse_range(input_range), convert_channels=convert_channels, labels=labels, limit=limit)


def _shape(text):
    return parse_input_shape(text) if text else None


@app.command()
def quantize(
    model: Annotated[Path, typer.Argument(help="A .keras, .h5 or SavedModel folder.")],
    to: Annotated[str, typer.Option("--to", help="tflite or tfjs.")],
    mode: Annotated[str, typer.Option(help="tflite: float32, float16, dynamic, int16x8, int8, int4. tfjs: float32, float16, uint16, uint8.")],
    out: Annotated[Path, typer.Option(help="A .tflite file, or a folder for TF.js.")],
    calibration: Annotated[Optional[Path], typer.Option(help="Images for int8 calibration: folder of PNG/JPEG, .npy or .npz.")] = None,
    input_range: RangeOption = "0:1",
    io_type: Annotated[str, typer.Option(help="int8 TFLite input/output type: float32, int8 or uint8.")] = "float32",
    float_layer: Annotated[Optional[list[str]], typer.Option(help="Keep this Keras layer in float (int8 TFLite; repeatable).")] = None,
    shard_size: Annotated[str, typer.Option(help="TF.js weight shard size, e.g. '4 MiB'.")] = "4 MiB",
    allow_select_tf_ops: Annotated[bool, typer.Option(help="Let TFLite use TensorFlow ops (needs the Flex delegate).")] = False,
    convert_channels: ChannelsOption = False,
    input_shape: ShapeOption = None,
    layer_report: Annotated[int, typer.Option(min=0, help="int8: list the N layers that lose most to quantization.")] = 0,
    engine: Annotated[Optional[str], typer.Option(help="tflite-converter or litert-quantizer (default: the one measured best for the mode).")] = None,
    dynamic_batch: Annotated[bool, typer.Option(help="A batch of any size instead of the static batch of 1 (shapes then computed at run time; static-shape accelerators and LiteRT.js refuse it).")] = False,
    trust_model: TrustOption = False,
    custom_objects: CustomObjectsOption = None,
    force: ForceOption = False,
    as_json: JsonOption = False,
):
    """Convert a model to one TFLite or TF.js artifact."""
    result = quantize_file(
        model, to, mode, out,
        data=_data(calibration, input_range, convert_channels),
        io_type=io_type,
        float_layers=tuple(float_layer or ()),
        shard_size_bytes=parse_size(shard_size, "--shard-size"),
        allow_select_tf_ops=allow_select_tf_ops,
        input_shape=_shape(input_shape),
        trust=trust_model,
        force=force,
        layer_report=layer_report,
        engine=engine,
        custom_objects=tuple(custom_objects or ()),
        dynamic_batch=dynamic_batch,
    )
    _emit(result, as_json)


@app.command()
def prune(
    model: Annotated[Path, typer.Argument(help="A .keras or .h5 model.")],
    sparsity: Annotated[float, typer.Option(help="Target fraction of zero weights in Conv/Dense kernels, e.g. 0.5.")],
    out: Annotated[Path, typer.Option(help="Where to write the pruned model (.keras).")],
    calibration: Annotated[Optional[Path], typer.Option(help="Unlabelled images to fine-tune on by distillation.")] = None,
    labels: Annotated[Optional[Path], typer.Option(help="Optional labels for the calibration images.")] = None,
    validation: Annotated[Optional[Path], typer.Option(help="Held-out images: top-1 agreement measured on images fine-tuning never saw.")] = None,
    epochs: Annotated[int, typer.Option(help="Fine-tuning epochs; 0 prunes one-shot.")] = 30,
    scope: Annotated[str, typer.Option(help="global (rank all kernels together) or per_layer.")] = "global",
    input_range: RangeOption = "0:1",
    convert_channels: ChannelsOption = False,
    trust_model: TrustOption = False,
    custom_objects: CustomObjectsOption = None,
    force: ForceOption = False,
    as_json: JsonOption = False,
):
    """Prune a model to a target sparsity and recover accuracy by distillation from the float model."""
    result = prune_file(
        model, sparsity, out,
        data=_data(calibration, input_range, convert_channels, labels=labels, limit=None),
        epochs=epochs, scope=scope, trust=trust_model, force=force,
        validation=_data(validation, input_range, convert_channels, limit=None) if validation else None,
        custom_objects=tuple(custom_objects or ()),
    )
    _emit(result, as_json)


@app.command()
def validate(
    reference: Annotated[Path, typer.Argument(help="The float model: .keras, .h5 or SavedModel folder.")],
    candidate: Annotated[Path, typer.Argument(help="A .tflite file, a TF.js graph-model folder or a LiteRT.js bundle's litertjs/ folder.")],
    data: Annotated[Path, typer.Option(help="Images: folder of PNG/JPEG, .npy or .npz (with optional labels).")],
    labels: Annotated[Optional[Path], typer.Option(help="Labels file (.npy, .npz or one integer per line).")] = None,
    threads: Annotated[int, typer.Option(min=1, max=64, help="TFLite interpreter threads.")] = 1,
    latency_runs: Annotated[int, typer.Option(min=0, help="Single-image runs to time (0: no latency).")] = 50,
    limit: Annotated[Optional[int], typer.Option(min=1, help="Compare at most this many images (seeded choice).")] = None,
    min_top1: Annotated[Optional[float], typer.Option(help="Fail (exit 1) below this top-1 agreement.")] = None,
    max_abs: Annotated[Optional[float], typer.Option(help="Fail (exit 1) above this max absolute error.")] = None,
    max_accuracy_drop: Annotated[Optional[float], typer.Option(help="Fail (exit 1) if accuracy drops more (needs labels).")] = None,
    input_range: RangeOption = "0:1",
    convert_channels: ChannelsOption = False,
    runtime: Annotated[str, typer.Option(help="node (TF.js in Node.js; a .tflite in LiteRT) or chromium (headless Chromium through the loader page: TF.js, or LiteRT.js for a .tflite). A litertjs/ folder always runs in LiteRT.js in Chromium.")] = "node",
    browser_backend: Annotated[str, typer.Option(help="In Chromium: the backend, wasm, webgl (TF.js only) or webgpu (SwiftShader without a GPU).")] = "wasm",
    trust_model: TrustOption = False,
    custom_objects: CustomObjectsOption = None,
    as_json: JsonOption = False,
):
    """Measure drift and latency of a compressed candidate against its float reference, in the real runtime."""
    if runtime not in ("node", "chromium"):
        raise MobilepreError(f"--runtime {runtime!r}: expected node or chromium")
    if browser_backend not in BROWSER_BACKENDS:
        raise MobilepreError(f"--browser-backend {browser_backend!r}: expected {' or '.join(BROWSER_BACKENDS)}")
    result = validate_files(
        reference, candidate,
        data=_data(data, input_range, convert_channels, labels=labels, limit=limit),
        threads=threads, latency_runs=latency_runs,
        tolerances={"min_top1_agreement": min_top1, "max_abs_error": max_abs, "max_accuracy_drop": max_accuracy_drop},
        trust=trust_model,
        browser=browser_backend if runtime == "chromium" else None,
        custom_objects=tuple(custom_objects or ()),
    )
    _emit(result, as_json)
    raise typer.Exit(result.exit_code)


@app.command()
def build(
    model: Annotated[Optional[Path], typer.Argument(help="A .keras, .h5 or SavedModel folder; none builds the embedded demo model.")] = None,
    out: Annotated[Optional[Path], typer.Option(help="Output folder: one bundle per profile, report.json, report.html, report.md.")] = None,
    profiles: Annotated[Optional[Path], typer.Option(help="A profile TOML file or a folder of them (default: the shipped ones).")] = None,
    profile: Annotated[Optional[list[str]], typer.Option(help="Build only this profile (repeatable, or names separated by commas: a `plan` cell).")] = None,
    calibration: Annotated[Optional[Path], typer.Option(help="Images for int8 calibration and pruning.")] = None,
    validation: Annotated[Optional[Path], typer.Option(help="Images to measure drift on (default: the calibration images).")] = None,
    labels: Annotated[Optional[Path], typer.Option(help="Labels of the validation images.")] = None,
    frontend: Annotated[Optional[bool], typer.Option("--frontend/--no-frontend", help="Give a float model a uint8 input with in-model rescaling.")] = None,
    rgb_input: Annotated[Optional[bool], typer.Option("--rgb-input/--gray-input", help="A 1-channel model's bundles take RGB, turned into luma inside the model (default); --gray-input keeps 1 channel.")] = None,
    class_names: Annotated[Optional[Path], typer.Option(help="Class names for the bundles' metadata: a text file, one per line in class order.")] = None,
    baseline: Annotated[Optional[Path], typer.Option(help="A previous build's output folder: the reports add the change in bytes, gzip, latency and drift.")] = None,
    input_range: Annotated[Optional[str], typer.Option(help="Float models: decoded pixels map to LOW:HIGH (default 0:1).")] = None,
    device_timings: Annotated[Optional[Path], typer.Option(help="JSON of on-device latencies (ms or benchmark_model output) per candidate.")] = None,
    config: Annotated[Optional[Path], typer.Option(help="Take options from this TOML file; flags given here win.")] = None,
    jobs: Annotated[Optional[int], typer.Option(help="Candidates converted (in worker processes) and validated at once.")] = None,
    latency_runs: Annotated[Optional[int], typer.Option(help="Timed single-image runs per candidate (default 50).")] = None,
    prune_epochs: Annotated[Optional[int], typer.Option(help="Distillation epochs per pruned candidate (default 30).")] = None,
    shard_size: Annotated[Optional[str], typer.Option(help="TF.js weight shard size, e.g. '1 MiB' (default 4 MiB).")] = None,
    input_shape: ShapeOption = None,
    trust_model: Annotated[Optional[bool], typer.Option("--trust-model", help="Lift the model scan's refusals (see docs/security.md).")] = None,
    custom_objects: CustomObjectsOption = None,
    sign_key: Annotated[Optional[Path], typer.Option(help="Sign each bundle with this elliptic-curve private key (PEM).")] = None,
    allow_degenerate_reference: Annotated[Optional[bool], typer.Option("--allow-degenerate-reference", help="Build even when the float model gives one class for nearly every validation image.")] = None,
    force: Annotated[Optional[bool], typer.Option("--force", help="Replace an existing output folder.")] = None,
    cache: Annotated[Optional[Path], typer.Option(help="Candidate cache folder (default: MOBILEPRE_CACHE, else $XDG_CACHE_HOME/mobilepre, else ~/.cache/mobilepre).")] = None,
    no_cache: Annotated[bool, typer.Option("--no-cache", help="Convert and validate every candidate; read and write no cache.")] = False,
    cache_max: Annotated[Optional[str], typer.Option(help="The cache's size bound, least recently used entries evicted (default 5 GiB).")] = None,
    cache_latency: Annotated[Optional[bool], typer.Option("--cache-latency", help="Also reuse host latencies measured on a machine like this one (same CPU, core count, memory, OS).")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", help="No progress display or events on stderr (errors still say one line).")] = False,
    as_json: JsonOption = False,
):
    """Build one size-budgeted bundle per device profile. Exit 1 if a profile has no candidate within budget."""
    options = load_build_config(config) if config else {}
    given = {
        "model": model, "out": out, "profiles": profiles, "profile": _names(profile),
        "calibration": calibration, "validation": validation, "labels": labels, "frontend": frontend,
        "rgb_input": rgb_input, "class_names": class_names, "baseline": baseline,
        "shard_size": parse_size(shard_size, "--shard-size") if shard_size else None,
        "input_range": parse_range(input_range) if input_range else None, "device_timings": device_timings,
        "jobs": jobs, "latency_runs": latency_runs, "prune_epochs": prune_epochs,
        "input_shape": _shape(input_shape), "trust_model": trust_model, "force": force, "sign_key": sign_key,
        "custom_objects": tuple(custom_objects) if custom_objects else None,
        "allow_degenerate_reference": allow_degenerate_reference, "cache": cache, "cache_latency": cache_latency,
        "cache_max_bytes": parse_size(cache_max, "--cache-max") if cache_max else None,
    }
    options.update({k: v for k, v in given.items() if v is not None})
    if no_cache:
        options["cache"] = None
    elif "cache" not in options:
        options["cache"] = default_cache_dir()
    if "out" not in options:
        raise MobilepreError("build needs an output folder: pass --out DIR (or out = \"DIR\" in --config)")
    result = run_build(BuildOptions(**options), progress=reporter_for(quiet, names=flags()))
    _emit(result, as_json)
    _say_failure(result.failure())
    raise typer.Exit(result.exit_code)


RequireSignatureOption = Annotated[
    bool, typer.Option("--require-signature", help="Fail unless --verify-key shows every bundle signed (a forgotten key fails instead of passing unsigned bundles).")
]


@app.command()
def check(
    root: Annotated[Path, typer.Argument(help="A build output folder, or one bundle.")],
    profiles: Annotated[Optional[Path], typer.Option(help="Profiles as they are now (default: the shipped ones; else the manifest's copy).")] = None,
    data: Annotated[Optional[Path], typer.Option(help="Images to re-validate drift on (with --reference).")] = None,
    reference: Annotated[Optional[Path], typer.Option(help="The float model the bundles were built from (default for demo bundles: the demo).")] = None,
    measure: Annotated[bool, typer.Option("--measure/--no-measure", help="Re-measure host latency.")] = True,
    repeat: Annotated[int, typer.Option(help="Time each artifact in this many rounds (fresh processes) and judge the interval of their medians.")] = 1,
    device_timings: Annotated[Optional[Path], typer.Option(help="JSON of on-device latencies per candidate.")] = None,
    input_range: RangeOption = "0:1",
    only_present: Annotated[bool, typer.Option("--only-present", help="Check the bundles there without requiring every profile's bundle.")] = False,
    verify_key: Annotated[Optional[Path], typer.Option(help="Require every bundle to be signed by the private key of this public key (PEM).")] = None,
    require_signature: RequireSignatureOption = False,
    junit: Annotated[Optional[Path], typer.Option(help="Write JUnit XML here: one test case per bundle and check.")] = None,
    trust_model: TrustOption = False,
    custom_objects: CustomObjectsOption = None,
    as_json: JsonOption = False,
):
    """Re-verify bundles against their manifests and the profiles' budgets. Exit 1 on any failure."""
    result = run_check(
        root, profiles=profiles, data=data, reference=reference, measure=measure,
        device_timings=device_timings, input_range=parse_range(input_range), trust=trust_model,
        only_present=only_present, verify_key=verify_key, require_signature=require_signature,
        custom_objects=tuple(custom_objects or ()), repeat=repeat,
    )
    if junit is not None:

        with atomic_file(junit) as tmp:
            tmp.write_text(result.junit_xml())
    _emit(result, as_json)
    _say_failure(result.failure())
    raise typer.Exit(result.exit_code)


@app.command("check-files")
def check_files_command(
    files: Annotated[Optional[list[Path]], typer.Argument(help="Changed files (what pre-commit passes); a changed profile .toml checks every bundle here.")] = None,
    profiles: Annotated[Optional[Path], typer.Option(help="Profiles as they are now (default: ./device_profiles when it exists, else the shipped ones).")] = None,
    measure: Annotated[bool, typer.Option("--measure/--no-measure", help="Re-measure host latency (off by default: a laptop is not the device).")] = False,
    verify_key: Annotated[Optional[Path], typer.Option(help="Require every bundle to be signed by the private key of this public key (PEM).")] = None,
    require_signature: RequireSignatureOption = False,
    as_json: JsonOption = False,
):
    """Check the bundles these files belong to, each on its own (the pre-commit hook). Exit 1 on any failure."""
    result = check_files(files or (), profiles=profiles, measure=measure, verify_key=verify_key, require_signature=require_signature)
    _emit(result, as_json)
    _say_failure(result.failure())
    raise typer.Exit(result.exit_code)


@app.command()
def plan(
    models: Annotated[Optional[list[Path]], typer.Argument(help="Models to build (.keras, .h5, SavedModel folders); none: the demo.")] = None,
    profiles: Annotated[Optional[Path], typer.Option(help="A profile TOML file or a folder of them (default: the shipped ones).")] = None,
    by: Annotated[str, typer.Option(help="One job per model and 'profile', or per model and group of profiles that share candidates ('shared').")] = "profile",
    as_json: Annotated[bool, typer.Option("--json", help="Print the matrix as one line of JSON, as GitHub Actions' strategy.matrix takes it.")] = False,
):
    """Print the build matrix for CI: each cell is one `mobilepre build --profile ...` job."""
    result = make_plan(models or (), profiles, by)
    typer.echo(result.to_json() if as_json else result.to_text())


@app.command()
def merge(
    out: Annotated[Path, typer.Argument(help="The merged output folder (as `build --out` writes it).")],
    parts: Annotated[list[Path], typer.Argument(help="Output folders of builds of the same model and images, some profiles each.")],
    verify_key: Annotated[Optional[Path], typer.Option(help="Require every bundle to be signed by the private key of this public key (PEM).")] = None,
    baseline: Annotated[Optional[Path], typer.Option(help="A previous build's output folder: the reports add the change in bytes, gzip, latency and drift.")] = None,
    force: Annotated[bool, typer.Option("--force", help="Replace an existing output folder.")] = False,
    as_json: JsonOption = False,
):
    """Assemble build parts (CI matrix cells) into one output, as one build of all their profiles writes it. Exit 1 if a profile has no bundle."""
    result = run_merge(out, parts, force=force, verify_key=verify_key, baseline=baseline)
    _emit(result, as_json)
    raise typer.Exit(result.exit_code)


@app.command()
def copy(
    source: Annotated[Path, typer.Argument(help="A build output folder, or one bundle.")],
    dest: Annotated[Path, typer.Argument(help="The folder to hold the bundle, e.g. app/src/main/assets/model (replaced only if it is an earlier copy).")],
    profile: Annotated[Optional[str], typer.Option(help="Whose bundle to copy (needed when the output holds several).")] = None,
    verify_key: Annotated[Optional[Path], typer.Option(help="Require the bundle to be signed by the private key of this public key (PEM).")] = None,
    as_json: JsonOption = False,
):
    """Verify one bundle and copy it into an app (assets, resources, public/). Exit 1 if it fails its check or is missing."""
    _emit(deliver(source, dest, profile=profile, verify_key=verify_key), as_json)


@app.command()
def sign(
    root: Annotated[Path, typer.Argument(help="A build output folder, or one bundle.")],
    key: Annotated[Path, typer.Option(help="Elliptic-curve private key (PEM).")],
    as_json: JsonOption = False,
):
    """Sign every bundle under ROOT (each must pass its integrity check first). Exit 1 if one does not."""
    result = sign_bundles(root, key)
    _emit(result, as_json)
    raise typer.Exit(result.exit_code)


cache_app = typer.Typer(help="Show or empty the candidate cache builds share.", no_args_is_help=True)
app.add_typer(cache_app, name="cache")
CacheDir = Annotated[Optional[Path], typer.Option("--cache", help="Cache folder (default: MOBILEPRE_CACHE, else $XDG_CACHE_HOME/mobilepre, else ~/.cache/mobilepre).")]


@cache_app.command("info")
def cache_info(cache: CacheDir = None, as_json: JsonOption = False):
    """Where the cache is, how many entries it holds and their size."""
    _emit(CandidateCache(cache or default_cache_dir(), DEFAULT_MAX_BYTES).info(), as_json)


@cache_app.command("clear")
def cache_clear(cache: CacheDir = None):
    """Remove every entry (a build using the cache meanwhile only misses)."""
    root = cache or default_cache_dir()
    if root.exists() and not (root / "entries").is_dir():
        raise MobilepreError(f"--cache {root} is not a mobilepre cache folder (no entries/ in it): nothing removed")
    removed = CandidateCache(root).clear() if root.exists() else 0
    typer.echo(f"removed {removed} entries from {root}")


profiles_app = typer.Typer(help="List, show and check device profiles.", no_args_is_help=True)
app.add_typer(profiles_app, name="profiles")
ProfilesDir = Annotated[Optional[Path], typer.Option("--profiles", help="A profile file or folder (default: the shipped ones).")]


@profiles_app.command("list")
def profiles_list(profiles: ProfilesDir = None, as_json: JsonOption = False):
    """One line per profile: name, formats, size budget."""
    found = load_profiles(profiles or default_profiles_dir())
    if as_json:
        typer.echo(json.dumps([p.to_dict() for p in found], indent=2, sort_keys=True))
        return
    for p in found:
        typer.echo(f"{p.name:<18} {'+'.join(p.formats):<12} max {format_size(p.budget.max_size):<9} {p.description}")


@profiles_app.command("show")
def profiles_show(name: Annotated[str, typer.Argument(help="Profile name.")], profiles: ProfilesDir = None):
    """Every setting of one profile, as JSON."""
    found = {p.name: p for p in load_profiles(profiles or default_profiles_dir())}
    if name not in found:
        raise MobilepreError(f"no profile named {name!r}: known profiles are {', '.join(sorted(found))}")
    typer.echo(json.dumps(found[name].to_dict(), indent=2, sort_keys=True))


@profiles_app.command("check")
def profiles_check(file: Annotated[Path, typer.Argument(help="A profile TOML file or a folder of them.")]):
    """Validate profile files strictly; exit 2 with one line naming the file and key on the first problem."""
    for p in load_profiles(file):
        typer.echo(f"ok {p.name}")


def _fail(message: str, exit_code: int, as_json: bool) -> None:
    """One line on stderr; with `--json`, also `{"error": ..., "exit_code": ...}` on stdout (scripts read one stream)."""
    message = one_line(message)
    if as_json:
        typer.echo(json.dumps({"error": message, "exit_code": exit_code}))
    typer.echo(f"mobilepre: error: {message}", err=True)
    sys.exit(exit_code)


# Library parameters whose CLI option has another name (every other parameter is the option of the same
# name, found in the commands themselves by `flags`).
_RENAMED = {"cache_max_bytes": "--cache-max", "shard_size_bytes": "--shard-size", "latency_runs": "--latency-runs",
            "model": "MODEL", "out": "--out", "prune_epochs": "--prune-epochs", "epochs": "--epochs",
            "min_top1_agreement": "--min-top1", "max_abs_error": "--max-abs", "trust": "--trust-model",
            "private_key": "--sign-key", "public_key": "--verify-key", "browser": "--runtime chromium"}


def flags() -> dict[str, str]:
    """Library parameter name -> the CLI's word for it (`input_shape` -> `--input-shape`): the one place
    the CLI maps the library's words to its own, read from the commands' own options."""
    import typer.main

    found: dict[str, str] = {}

    def walk(command) -> None:
        for parameter in getattr(command, "params", ()):
            if parameter.param_type_name == "option":
                longest = max(parameter.opts, key=len)
                found.setdefault(parameter.name, longest)
            else:
                found.setdefault(parameter.name, parameter.name.upper())
        for sub in getattr(command, "commands", {}).values():
            walk(sub)

    walk(typer.main.get_command(app))
    return {**found, **_RENAMED}


def main() -> None:
    """Entry point: one line and a documented exit code for every user mistake."""
    as_json = "--json" in sys.argv[1:]
    try:
        code = app(standalone_mode=False)
    except MobilepreError as error:
        _fail(error.render(flags()), error.exit_code, as_json)
    except typer.Abort:
        typer.echo("mobilepre: interrupted; outputs were left as they were before this run", err=True)
        sys.exit(130)
    except typer.TyperException as error:  # a usage mistake Typer found: unknown option, bad value, no command
        if type(error).__name__ == "NoArgsIsHelpError":  # `mobilepre` alone: the help, as Typer shows it
            error.show()
            sys.exit(error.exit_code)
        _fail(error.format_message(), getattr(error, "exit_code", 2), as_json)
    except KeyboardInterrupt:
        typer.echo("mobilepre: interrupted; outputs were left as they were before this run", err=True)
        sys.exit(130)
    sys.exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":
    main()
