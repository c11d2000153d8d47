"""The candidate cache: hits, a miss for each part of the key, damage, concurrent builds, eviction, byte identity."""

import json
import multiprocessing
import os
import shutil
import time
from pathlib import Path

import numpy as np
import pytest

from mobilepre import demo
from mobilepre.builder import BuildOptions, build
from mobilepre.cache import CandidateCache, content_key
from mobilepre.errors import MobilepreError
from tests.conftest import run_cli
from tests.test_build import tree_hashes, write_profile

FILES = {"model.tflite": b"\x00tflite bytes" * 100}
RECORD = {"size_bytes": 1300, "drift": [{"name": "out", "max_abs_error": 0.01}]}


@pytest.fixture(autouse=True)
def own_cache(fresh_cache):
    """Tests of the cache itself start from an empty one (the CLI's default too), not the session's."""
    return fresh_cache


def entry_folder(cache: CandidateCache, key: str) -> Path:
    return cache.root / "entries" / key


def test_a_stored_entry_comes_back_whole_and_keys_ignore_order(tmp_path):
    cache = CandidateCache(tmp_path / "c").open()
    key = content_key({"model": "abc", "candidate": {"mode": "int8"}})
    assert key == content_key({"candidate": {"mode": "int8"}, "model": "abc"})
    assert cache.get(key) is None
    cache.put(key, RECORD, FILES, {"candidate": "tflite-int8"})
    entry = cache.get(key)
    assert entry.record == RECORD and entry.files == FILES
    assert cache.stats.to_dict() | {} == {"hits": 1, "misses": 1, "writes": 1, "damaged": 0, "evicted": 0, "latency_hits": 0}
    assert cache.info().entries == 1 and cache.info().size_bytes > len(FILES["model.tflite"])


@pytest.mark.parametrize("damage", ["artifact byte", "artifact missing", "entry record", "entry truncated", "extra digest"])
def test_a_damaged_entry_is_a_miss_and_is_removed(tmp_path, damage):
    cache = CandidateCache(tmp_path / "c").open()
    key = content_key({"k": damage})
    cache.put(key, RECORD, FILES, {})
    folder = entry_folder(cache, key)
    artifact, document = folder / "files" / "model.tflite", folder / "entry.json"
    if damage == "artifact byte":
        data = bytearray(artifact.read_bytes())
        data[5] ^= 1
        artifact.write_bytes(bytes(data))
    elif damage == "artifact missing":
        artifact.unlink()
    elif damage == "entry record":  # a forged measurement without a matching digest
        doc = json.loads(document.read_text())
        doc["record"]["drift"][0]["max_abs_error"] = 0.0
        document.write_text(json.dumps(doc))
    elif damage == "entry truncated":
        document.write_text(document.read_text()[:40])
    else:
        doc = json.loads(document.read_text())
        doc["digest"] = "0" * 64
        document.write_text(json.dumps(doc))
    assert cache.get(key) is None
    assert cache.stats.damaged == 1 and not folder.exists()
    cache.put(key, RECORD, FILES, {})  # and it can be stored again
    assert cache.get(key).files == FILES


def test_least_recently_used_entries_are_evicted_over_the_bound(tmp_path):
    cache = CandidateCache(tmp_path / "c", max_bytes=3 * 1024 * 1024).open()
    big = {"model.tflite": os.urandom(1024 * 1024)}
    keys = [content_key({"n": i}) for i in range(3)]
    for key in keys[:2]:
        cache.put(key, {}, big, {})
        time.sleep(0.05)
    assert cache.get(keys[0]) is not None  # the first is now used more recently than the second
    time.sleep(0.05)
    cache.put(keys[2], {}, big, {})
    assert cache.info().size_bytes <= 3 * 1024 * 1024
    assert cache.get(keys[1]) is None and cache.get(keys[0]) is not None and cache.get(keys[2]) is not None
    assert cache.stats.evicted == 1


def test_latencies_are_kept_only_when_asked_and_only_for_this_host(tmp_path):
    key = content_key({"k": 1})
    plain = CandidateCache(tmp_path / "c").open()
    plain.put(key, {}, FILES, {})
    plain.add_latency(key, "tflite:2:50", {"median_ms": 1.5})
    assert plain.get(key).latency == {}
    timed = CandidateCache(tmp_path / "c", latency=True)
    timed.add_latency(key, "tflite:2:50", {"median_ms": 1.5})
    entry = timed.get(key)
    assert timed.latency_for(entry, "tflite:2:50") == {"median_ms": 1.5}
    assert timed.latency_for(entry, "tflite:4:50") is None  # another thread count is another figure
    other = CandidateCache(tmp_path / "c", latency=True)
    other.host = "another machine"
    assert other.latency_for(other.get(key), "tflite:2:50") is None


def _writer(root: str, worker: int, rounds: int, queue) -> None:
    cache = CandidateCache(Path(root), max_bytes=2 * 1024 * 1024).open()
    bad = 0
    for i in range(rounds):
        key = content_key({"shared": i % 4})  # every worker writes and reads the same few keys
        payload = {"model.tflite": bytes([i % 4]) * (200_000 + i % 4)}
        cache.put(key, {"i": i % 4}, payload, {})
        entry = cache.get(key)
        if entry is not None and (entry.files != payload or entry.record != {"i": i % 4}):
            bad += 1
        cache.put(content_key({"own": worker, "i": i}), {}, {"x": os.urandom(100_000)}, {})  # forces eviction
    queue.put((bad, cache.stats.damaged))


def test_concurrent_builds_never_read_a_half_written_or_wrong_entry(tmp_path):
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    workers = [ctx.Process(target=_writer, args=(str(tmp_path / "c"), w, 30, queue)) for w in range(4)]
    for w in workers:
        w.start()
    results = [queue.get(timeout=120) for _ in workers]
    for w in workers:
        w.join(timeout=60)
    assert all(w.exitcode == 0 for w in workers)
    assert results == [(0, 0)] * 4
    assert not any((tmp_path / "c" / "tmp").iterdir())  # no staging left behind
    assert CandidateCache(tmp_path / "c").info().size_bytes <= 2 * 1024 * 1024 + 4 * 300_000


def test_an_unusable_cache_folder_is_one_line_before_any_work(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(MobilepreError, match=r"--cache .*cannot be used as a cache folder.*--no-cache"):
        build(BuildOptions(out=tmp_path / "out", cache=blocker / "c"))
    with pytest.raises(MobilepreError, match="may not hold one another"):
        build(BuildOptions(out=tmp_path / "out", cache=tmp_path / "out" / "cache"))
    assert not (tmp_path / "out").exists()


def test_cache_info_and_clear_from_the_cli(tmp_path):
    cache = CandidateCache(tmp_path / "c").open()
    for i in range(3):
        cache.put(content_key({"i": i}), {}, FILES, {})
    info = run_cli("cache", "info", "--cache", tmp_path / "c", "--json")
    assert info.returncode == 0 and json.loads(info.stdout)["entries"] == 3
    cleared = run_cli("cache", "clear", "--cache", tmp_path / "c")
    assert cleared.returncode == 0 and "removed 3 entries" in cleared.stdout
    assert CandidateCache(tmp_path / "c").info().entries == 0
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "keep.txt").write_text("a user's file")
    refused = run_cli("cache", "clear", "--cache", tmp_path / "mine")
    assert refused.returncode == 2 and "not a mobilepre cache folder" in refused.stderr
    assert (tmp_path / "mine" / "keep.txt").exists()


# ------------------------------------------------------------------------------------------ in a build


PROFILE = 'formats = ["tflite"]\nquantization = ["float32", "int8"]\nprefer = "size"\n[budget]\nmax_size = "1 MiB"\n[drift]\nmin_top1_agreement = 0.9\n'


@pytest.fixture(scope="module")
def cached_builds(tmp_path_factory):
    """The demo built into a cache, then again with one input changed at a time."""
    root = tmp_path_factory.mktemp("cached")
    profiles = root / "profiles"
    write_profile(profiles, "small", PROFILE)
    with np.load(demo.validation_path()) as stored:
        np.save(root / "fewer.npy", stored["images"][: len(stored["images"]) // 2])
    cache = root / "cache"
    run = lambda name, **kw: build(BuildOptions(out=root / name, profiles=kw.pop("profiles", profiles), cache=cache, latency_runs=3, **kw))  # noqa: E731
    results = {"cold": run("cold"), "warm": run("warm")}
    results["uncached"] = build(BuildOptions(out=root / "uncached", profiles=profiles, latency_runs=3))
    write_profile(root / "budget-profiles", "small", PROFILE.replace('"1 MiB"', '"900 KiB"').replace("0.9", "0.8"))
    results["budget"] = run("budget", profiles=root / "budget-profiles")
    results["validation"] = run("validation", validation=root / "fewer.npy", calibration=demo.calibration_path())
    results["calibration"] = run("calibration", calibration=root / "fewer.npy", validation=demo.validation_path())
    results["epochs"] = run("epochs", prune_epochs=3)  # no candidate of this profile is fine-tuned: nothing to redo
    results["shard"] = run("shard", shard_size=64 * 1024)  # TF.js only: the TFLite candidates stay
    return root, results


@pytest.mark.slow
def test_a_warm_rebuild_converts_nothing_and_writes_the_same_bundles(cached_builds):
    root, results = cached_builds
    # two candidates, the reference outputs, and that the model file loaded in the sandbox
    assert results["cold"].conversions == 2 and results["cold"].cache["writes"] == 4
    # what ships is validated fresh, not taken from the cache: the one chosen artifact, run once
    assert results["warm"].conversions == 0 and results["warm"].validations == 1
    assert results["warm"].cache["hits"] == 4
    assert tree_hashes(root / "warm") == tree_hashes(root / "cold") == tree_hashes(root / "uncached")


@pytest.mark.slow
def test_a_budget_change_converts_nothing(cached_builds):
    _, results = cached_builds
    assert results["budget"].conversions == 0 and results["budget"].passed


@pytest.mark.slow
@pytest.mark.parametrize("changed", ["validation", "calibration"])
def test_other_images_miss(cached_builds, changed):
    _, results = cached_builds
    assert results[changed].conversions == 2


@pytest.mark.slow
def test_settings_no_candidate_uses_still_hit(cached_builds):
    _, results = cached_builds
    assert results["epochs"].conversions == 0
    assert results["shard"].conversions == 0  # TF.js shards: no TFLite candidate changes


@pytest.mark.slow
def test_another_toolchain_or_model_misses(cached_builds, monkeypatch, keras, tmp_path):
    root, _ = cached_builds
    from mobilepre import keys

    real = keys.toolchain_versions  # every key is derived in `keys`: another toolchain there misses everywhere
    monkeypatch.setattr(keys, "toolchain_versions", lambda: {**real(), "tensorflow": "2.99.0"})
    assert build(BuildOptions(out=tmp_path / "tool", profiles=root / "profiles", cache=root / "cache", latency_runs=3)).conversions == 2
    monkeypatch.setattr(keys, "toolchain_versions", real)
    model = keras.models.load_model(demo.model_path())
    model.layers[-1].set_weights([w * 1.01 for w in model.layers[-1].get_weights()])
    model.save(tmp_path / "other.keras")
    other = build(BuildOptions(out=tmp_path / "model", model=tmp_path / "other.keras", profiles=root / "profiles",
                               calibration=demo.calibration_path(), cache=root / "cache", latency_runs=3))
    assert other.conversions == 2


@pytest.mark.slow
def test_a_damaged_artifact_in_the_cache_is_rebuilt_not_shipped(cached_builds, tmp_path):
    root, _ = cached_builds
    cache = tmp_path / "cache"
    build(BuildOptions(out=tmp_path / "a", profiles=root / "profiles", cache=cache, latency_runs=3))
    for artifact in (cache / "entries").glob("*/files/model.tflite"):
        data = bytearray(artifact.read_bytes())
        data[len(data) // 2] ^= 0xFF
        artifact.write_bytes(bytes(data))
    again = build(BuildOptions(out=tmp_path / "b", profiles=root / "profiles", cache=cache, latency_runs=3))
    assert again.conversions == 2 and again.cache["damaged"] == 2
    assert tree_hashes(tmp_path / "a") == tree_hashes(tmp_path / "b")


def _forge(entry: Path, name: str, data: bytes) -> None:
    """What whoever can write a shared cache can do: replace an artifact and recompute every digest and size."""
    import hashlib

    from mobilepre.cache import _digest
    from mobilepre.quantize.artifact import gzip_size

    (entry / "files" / name).write_bytes(data)
    document = json.loads((entry / "entry.json").read_text())
    document["files"][name] = {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    document["record"].update(size_bytes=len(data), gzip_bytes=gzip_size(data))
    document["digest"] = _digest(document)
    (entry / "entry.json").write_text(json.dumps(document, sort_keys=True))


@pytest.mark.slow
def test_a_poisoned_cache_entry_never_ships(cached_builds, keras, tmp_path):
    """A cached int8 model replaced by the same model with every weight zeroed, its digests recomputed:
    the build checks what it ships fresh, discards the entry, measures anew and ships the true model."""
    from mobilepre import quantize

    root, _ = cached_builds
    cache = tmp_path / "cache"
    honest = build(BuildOptions(out=tmp_path / "a", profiles=root / "profiles", cache=cache, latency_runs=3))
    assert honest.profile("small").format("tflite").chosen.candidate == "tflite-int8"
    model = keras.models.load_model(demo.model_path())
    model.set_weights([np.zeros_like(w) for w in model.get_weights()])
    with np.load(demo.calibration_path()) as stored:
        zeroed = quantize.convert(model, quantize.QuantizationSettings("tflite", "int8"), stored["images"][:32]).files["model.tflite"]
    entry = next(e.parent for e in (cache / "entries").glob("*/entry.json")
                 if json.loads(e.read_text())["components"].get("candidate") == "tflite-int8")
    _forge(entry, "model.tflite", zeroed)
    said = []
    again = build(BuildOptions(out=tmp_path / "b", profiles=root / "profiles", cache=cache, latency_runs=3), progress=said.append)
    assert any("tflite-int8 from the cache differs from a fresh run" in line for line in said), said
    assert again.conversions == 1 and again.passed
    assert (tmp_path / "b" / "small" / "model.tflite").read_bytes() == (tmp_path / "a" / "small" / "model.tflite").read_bytes()
    assert tree_hashes(tmp_path / "a") == tree_hashes(tmp_path / "b")
    third = build(BuildOptions(out=tmp_path / "c", profiles=root / "profiles", cache=cache, latency_runs=3))
    assert third.conversions == 0 and tree_hashes(tmp_path / "c") == tree_hashes(tmp_path / "a")  # the entry was replaced


@pytest.mark.slow
def test_poisoned_reference_outputs_are_found_and_nothing_cached_is_trusted(cached_builds, tmp_path):
    root, _ = cached_builds
    cache = tmp_path / "cache"
    build(BuildOptions(out=tmp_path / "a", profiles=root / "profiles", cache=cache, latency_runs=3))
    entry = next(e.parent for e in (cache / "entries").glob("*/entry.json") if "reference" in json.loads(e.read_text())["components"])
    import io

    with np.load(io.BytesIO((entry / "files" / "reference.npz").read_bytes())) as stored:
        outputs = {k: np.roll(stored[k], 1, axis=-1) for k in stored.files}  # every class shifted by one
    buffer = io.BytesIO()
    np.savez(buffer, **outputs)
    _forge(entry, "reference.npz", buffer.getvalue())
    said = []
    again = build(BuildOptions(out=tmp_path / "b", profiles=root / "profiles", cache=cache, latency_runs=3), progress=said.append)
    assert any("cached reference outputs differ" in line for line in said), said
    assert again.conversions == 2 and tree_hashes(tmp_path / "a") == tree_hashes(tmp_path / "b")


@pytest.mark.slow
def test_the_cli_uses_the_default_cache_and_no_cache_turns_it_off(tmp_path):
    write_profile(tmp_path / "p", "small", PROFILE)
    args = ["build", "--profiles", tmp_path / "p", "--latency-runs", "3", "--json", "--quiet"]
    first = run_cli(*args, "--out", tmp_path / "a")
    second = run_cli(*args, "--out", tmp_path / "b")
    off = run_cli(*args, "--out", tmp_path / "c", "--no-cache")
    assert first.returncode == second.returncode == off.returncode == 0, first.stderr + second.stderr + off.stderr
    assert json.loads(second.stdout)["conversions"] == 0 and json.loads(second.stdout)["cache"]["hits"] == 4
    assert json.loads(off.stdout)["conversions"] == 2 and json.loads(off.stdout)["cache"] is None
    assert CandidateCache(Path(os.environ["MOBILEPRE_CACHE"])).info().entries == 4


def test_an_entry_naming_a_file_outside_itself_is_refused(tmp_path):
    cache = CandidateCache(tmp_path / "c").open()
    key = content_key({"k": "escape"})
    cache.put(key, RECORD, FILES, {})
    (tmp_path / "secret").write_bytes(b"not the cache's")
    document_path = entry_folder(cache, key) / "entry.json"
    doc = json.loads(document_path.read_text())
    import hashlib

    doc["files"] = {"../../../../secret": {"bytes": 15, "sha256": hashlib.sha256(b"not the cache's").hexdigest()}}
    from mobilepre.cache import _digest

    doc["digest"] = _digest(doc)
    document_path.write_text(json.dumps(doc))
    assert cache.get(key) is None and cache.stats.damaged == 1
    with pytest.raises(ValueError):
        cache.put(content_key({"k": 2}), {}, {"../x": b"1"}, {})


def test_a_killed_builds_staged_entry_is_removed_by_the_next(tmp_path):
    CandidateCache(tmp_path / "c").open()
    stale = tmp_path / "c" / "tmp" / "0123456789abcdef.k3j2_x"  # as `put` names what it stages
    stale.mkdir()
    (stale / "model.tflite").write_bytes(b"half")
    strange = tmp_path / "c" / "tmp" / "notes"  # not the cache's: stays, however old
    strange.mkdir()
    old = time.time() - 7200
    os.utime(stale, (old, old))
    os.utime(strange, (old, old))
    fresh = tmp_path / "c" / "tmp" / "fedcba9876543210.abc123"
    fresh.mkdir()
    CandidateCache(tmp_path / "c").open()
    assert not stale.exists() and fresh.exists() and strange.exists()  # another build's entry in the making stays


def _victim(tmp_path):
    """A folder outside the cache whose sub-folders are old: what a symlinked cache folder would lead to."""
    victim = tmp_path / "victim"
    for name in ("0123456789abcdef.aaaa", "a" * 64, "keep"):
        (victim / name).mkdir(parents=True)
        (victim / name / "data").write_text("mine")
        old = time.time() - 7200
        os.utime(victim / name, (old, old))
    return victim, {p.relative_to(victim).as_posix(): p.read_text() for p in victim.rglob("data")}


@pytest.mark.parametrize("sub", ["tmp", "entries", "locks"])
def test_a_cache_folder_with_a_symlinked_layout_is_refused_and_nothing_outside_is_touched(tmp_path, sub):
    victim, before = _victim(tmp_path)
    cache = tmp_path / "cache"
    CandidateCache(cache).open()
    os.rmdir(cache / sub)
    os.symlink(victim, cache / sub)
    build = run_cli("build", "--out", tmp_path / "out", "--cache", cache, "--profile", "npu-int8")
    clear = run_cli("cache", "clear", "--cache", cache)
    for result in (build, clear):
        lines = result.stderr.strip().splitlines()
        assert result.returncode == 2 and len(lines) == 1 and f"its {sub}/ is a symlink" in lines[0], result.stderr
    assert {p.relative_to(victim).as_posix(): p.read_text() for p in victim.rglob("data")} == before
    assert sorted(p.name for p in victim.iterdir()) == sorted(["0123456789abcdef.aaaa", "a" * 64, "keep"])
    assert not (tmp_path / "out").exists()


def test_a_symlinked_entry_or_lock_is_never_followed(tmp_path):
    victim, before = _victim(tmp_path)
    cache = CandidateCache(tmp_path / "cache").open()
    key = content_key({"k": "poisoned"})
    os.symlink(victim / ("a" * 64), tmp_path / "cache" / "entries" / key)
    assert cache.get(key) is None  # a symlinked entry is damaged: a miss, never read through
    cache.evict()
    assert cache.clear() == 0  # not the cache's: not removed, not counted
    other = content_key({"k": "lock"})
    os.symlink(victim / "keep" / "data", tmp_path / "cache" / "locks" / f"{other}.lock")
    with pytest.raises(MobilepreError, match="is a symlink"):
        cache.get(other)
    assert {p.relative_to(victim).as_posix(): p.read_text() for p in victim.rglob("data")} == before


@pytest.mark.slow
def test_two_builds_sharing_a_cache_at_once_both_succeed_with_the_same_bundles(tmp_path):
    import subprocess

    from tests.conftest import CLI

    write_profile(tmp_path / "p", "small", PROFILE)
    env = {**os.environ, "MOBILEPRE_CACHE": str(tmp_path / "shared-cache"), "SOURCE_DATE_EPOCH": "1700000000"}
    runs = [subprocess.Popen([*CLI, "build", "--profiles", str(tmp_path / "p"), "--out", str(tmp_path / name), "--quiet"],
                             env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for name in ("a", "b")]
    outcomes = [run.communicate(timeout=600) for run in runs]
    assert [run.returncode for run in runs] == [0, 0], outcomes
    assert tree_hashes(tmp_path / "a") == tree_hashes(tmp_path / "b")
    cache = CandidateCache(tmp_path / "shared-cache")
    assert cache.info().entries == 4 and not any((tmp_path / "shared-cache" / "tmp").iterdir())


@pytest.mark.slow
def test_a_model_file_loaded_before_skips_the_trial_load_but_still_infers_in_a_child(cached_builds, monkeypatch, tmp_path):
    root, _ = cached_builds
    from mobilepre import inputs, models

    loads, predictions = [], []
    real_load, real_predict = inputs.load_model, models.ReferenceChild.predict
    monkeypatch.setattr(inputs, "load_model", lambda *a, **kw: loads.append(kw.get("isolate")) or real_load(*a, **kw))
    monkeypatch.setattr(models.ReferenceChild, "predict", lambda self, images: predictions.append(len(images)) or real_predict(self, images))
    with np.load(demo.validation_path()) as stored:
        np.save(tmp_path / "other.npy", stored["images"][-50:])
    result = build(BuildOptions(out=tmp_path / "out", profiles=root / "profiles", cache=root / "cache", latency_runs=3,
                                validation=tmp_path / "other.npy", calibration=demo.calibration_path()))
    assert loads == [False]  # the demo file loaded in the sandbox in an earlier build of this cache
    assert predictions == [50]  # the new images' reference outputs came from a sandboxed child
    assert result.conversions == 2 and result.passed


@pytest.mark.slow
def test_an_entry_with_good_hashes_but_a_record_this_version_cannot_read_is_measured_again(cached_builds, tmp_path):
    """A digest is a checksum, not a signature: a record rewritten with a fresh digest must still never
    become a traceback or a result."""
    root, _ = cached_builds
    import hashlib

    from mobilepre.cache import _digest

    cache = tmp_path / "cache"
    shutil.copytree(root / "cache", cache)
    for document_path in (cache / "entries").glob("*/entry.json"):
        doc = json.loads(document_path.read_text())
        if "size_bytes" in doc["record"]:
            doc["record"]["size_bytes"] = "many"
        elif "outputs" in doc["record"]:  # the reference outputs: an archive that is not one
            (document_path.parent / "files" / "reference.npz").write_bytes(b"not a zip")
            doc["files"]["reference.npz"] = {"bytes": 9, "sha256": hashlib.sha256(b"not a zip").hexdigest()}
        doc["digest"] = _digest(doc)
        document_path.write_text(json.dumps(doc))
    result = build(BuildOptions(out=tmp_path / "out", profiles=root / "profiles", cache=cache, latency_runs=3))
    assert result.passed and result.conversions == 2 and result.cache["damaged"] == 3
