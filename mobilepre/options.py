"""What a build takes: `BuildOptions`, frozen and validated once, in the library's own words."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from mobilepre.cache import DEFAULT_MAX_BYTES
from mobilepre.errors import MobilepreError, param


@dataclass(frozen=True)
class BuildOptions:
    """Everything a build takes. Validated by `build`; every field is also a key of `--config` TOML.

    Attributes:
        out (Path): output folder; one sub-folder (bundle) per profile, plus report.json/.html.
        model (Path | None): .keras, .h5 or SavedModel folder; None builds the embedded demo model.
        profiles (Path | None): a profile TOML file or a folder of them; None: the shipped profiles.
        profile (tuple[str, ...]): only these profile names. Default: all.
        calibration (Path | None): images for int8 calibration and pruning fine-tuning.
        validation (Path | None): images to measure drift on; default: the calibration images.
        labels (Path | None): labels of the validation images (accuracy drop).
        input_range (tuple[float, float]): float models: decoded pixels map to this range. Default (0, 1).
        frontend (bool): put a uint8 input and in-model rescaling in front of a float model, so bundles
            take raw pixels. Default False.
        rgb_input (bool): a grayscale (one-channel) model's bundles take RGB pixels, turned into luma
            inside the model (a fixed 1x1 convolution, ITU-R BT.601), so every image bundle takes what a
            camera gives; one-channel images are then repeated into R, G and B. Default True.
        shard_size (int): TF.js weight shard bytes (browsers fetch shards in parallel; some CDNs cap a
            file's size). Default 4 MiB, the converter's own.
        class_names (Path | None): a text file of class names, one per line in class-index order, for
            the bundles' metadata (default: the data's class sub-folders or CSV names; the demo's digits).
        baseline (Path | None): a previous build's output folder: the report adds, per profile, the
            change in bytes, gzip bytes, latency and drift.
        device_timings (Path | None): JSON of on-device latencies per candidate key.
        force (bool): replace an existing `out`. Default False.
        jobs (int): candidates converted at once (in worker processes) and validated at once. Default 1.
        latency_runs (int): single-image runs timed per candidate on this host. Default 50.
        prune_epochs (int): distillation epochs of each pruned candidate. Default 30.
        trust_model (bool): lift the model scan's refusals. Default False.
        custom_objects (tuple[str, ...]): modules (dotted names importable from the working folder, or
            .py files) that define and register the model's own Keras classes; imported only with
            `trust_model`, in the sandboxed child too (`models.load_model`).
        input_shape (tuple | None): H,W,C for models with dynamic input sizes.
        sign_key (Path | None): an elliptic-curve private key (PEM): each bundle gets a `signature.sig`
            over all its files (OpenSSF model-signing), for `check --verify-key`.
        allow_degenerate_reference (bool): build even when the float model's class scores are degenerate on
            the validation images (one class for nearly all, constant or tied scores). Default False:
            class-score budgets judged on such images say nothing, so the build is refused.
        config (Path | None): the `--config` file these options came from; the output may not replace it.
        cache (Path | None): the candidate cache folder (`mobilepre.cache`): candidates measured by an
            earlier build of the same content are reused, not converted again. None (the library's
            default; the CLI's is `default_cache_dir()`): no cache.
        cache_max_bytes (int): the cache's size bound; least recently used entries go first. Default 5 GiB.
        cache_latency (bool): also reuse host latencies measured on a machine of this one's identity (CPU
            model, CPU count, memory, OS) with the same threads and runs. Default False: latencies are
            measurements, taken again by every build.
    """

    out: Path
    model: Path | None = None
    profiles: Path | None = None
    profile: tuple[str, ...] = ()
    calibration: Path | None = None
    validation: Path | None = None
    labels: Path | None = None
    input_range: tuple[float, float] = (0.0, 1.0)
    frontend: bool = False
    rgb_input: bool = True
    shard_size: int = 4 * 1024 * 1024
    class_names: Path | None = None
    baseline: Path | None = None
    device_timings: Path | None = None
    force: bool = False
    jobs: int = 1
    latency_runs: int = 50
    prune_epochs: int = 30
    trust_model: bool = False
    custom_objects: tuple[str, ...] = ()
    input_shape: tuple | None = None
    sign_key: Path | None = None
    allow_degenerate_reference: bool = False
    config: Path | None = None
    cache: Path | None = None
    cache_max_bytes: int = DEFAULT_MAX_BYTES
    cache_latency: bool = False

    def __post_init__(self):
        if not isinstance(self.jobs, int) or not 1 <= self.jobs <= 16:
            raise MobilepreError(f"{param('jobs')} {self.jobs!r}: expected a whole number from 1 to 16")
        if not isinstance(self.latency_runs, int) or not 1 <= self.latency_runs <= 10_000:
            raise MobilepreError(f"{param('latency_runs')} {self.latency_runs!r}: expected a whole number from 1 to 10000")
        if not isinstance(self.shard_size, int) or isinstance(self.shard_size, bool) or self.shard_size < 1024:
            raise MobilepreError(f"{param('shard_size')} {self.shard_size!r}: expected at least 1 KiB, e.g. '4 MiB'")
        if not isinstance(self.prune_epochs, int) or self.prune_epochs < 0:
            raise MobilepreError(f"{param('prune_epochs')} {self.prune_epochs!r}: expected a whole number >= 0")
        if not isinstance(self.cache_max_bytes, int) or isinstance(self.cache_max_bytes, bool) or self.cache_max_bytes < 1024 * 1024:
            raise MobilepreError(f"{param('cache_max_bytes')} {self.cache_max_bytes!r}: expected at least 1 MiB, e.g. '5 GiB'")
