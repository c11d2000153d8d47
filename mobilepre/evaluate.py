"""Candidates measured for the search, each at most once per build: from the cache, or converted and run.

The parts are small and typed: `variants.Variants` makes the model's variants, `converting.Converter`
turns a candidate into a `Measured` with its files, `running.ArtifactRunner` runs it in its runtime, and
`mixed.MixedSearch` finds mixed-precision candidates over a measure function. `Evaluator` joins them and
wraps them in the cache: the search asks "measure these" and cannot tell a cached answer from a fresh one.
"""

from __future__ import annotations

import dataclasses
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from mobilepre.cache import CandidateCache
from mobilepre.candidates import Candidate
from mobilepre.converting import Converter
from mobilepre.keys import BuildContext, candidate_key
from mobilepre.measured import Measured
from mobilepre.mixed import MixedSearch
from mobilepre.progress import as_reporter
from mobilepre.quantize.settings import Mode
from mobilepre.results import Runoff
from mobilepre.running import ArtifactRunner, runtime_key
from mobilepre.runtimes import Latency
from mobilepre.validate import reference_outputs
from mobilepre.variants import Variants


class Evaluator:
    """Measures candidates on demand, each once per build, sharing the results with every profile.

    Args:
        converter (Converter), runner (ArtifactRunner): converting and running.
        mixed (MixedSearch | None): how a mixed candidate is found.
        profiles (dict[str, Profile]): by name: whose drift budgets a mixed candidate is found for.
        cache (CandidateCache | None), context (BuildContext | None): measured candidates of earlier
            builds of the same content (`keys.candidate_key`).
        progress: a reporter or callable.
    """

    def __init__(self, converter: Converter, runner: ArtifactRunner, mixed: MixedSearch | None = None, profiles=None,
                 cache: CandidateCache | None = None, context: BuildContext | None = None, progress=None):
        self.converter = converter
        self.runner = runner
        self.mixed = mixed
        self.profiles = dict(profiles or {})
        self.cache = cache if context is not None else None
        self.context = context
        self.progress = as_reporter(progress)
        self.measured: dict[Candidate, Measured] = {}
        self._keys: dict = {}  # candidate -> (its cache key, the entry it came from, or None when this build stored it)
        self._timed: dict = {}  # (candidate, runtime key) -> the `Latency` judged
        self._distrusted: set = set()  # candidates whose cache entry failed its fresh check: measured anew, never read
        self._backends: dict = {}  # (candidate, browser backend) -> `running.ArtifactRunner.run_on`'s answer

    @property
    def source(self):
        return self.converter.variants.source

    @property
    def labels(self):
        return self.runner.labels

    @property
    def conversions(self) -> int:
        return self.converter.conversions

    @property
    def validations(self) -> int:
        return self.runner.validations

    def measure(self, candidate: Candidate) -> Measured:
        return self.measure_many([candidate])[candidate]

    def measure_many(self, candidates, jobs: int = 1) -> dict:
        """Measure the candidates not measured yet: from the cache, else mixed ones by their search and the
        others converted (`jobs` conversions at once in worker processes for large models) and run
        (`jobs` runs at once: LiteRT and Node processes in parallel)."""
        wanted = sorted(set(candidates))
        if self.cache is not None:
            for candidate in wanted:
                if candidate not in self.measured and candidate not in self._distrusted:
                    self._from_cache(candidate)
        for candidate in wanted:
            if candidate.mode is Mode.MIXED and candidate not in self.measured:
                self._keep(self._find_mixed(candidate))
        pending = [c for c in wanted if c not in self.measured]
        converted = self.converter.convert_many(pending, jobs)
        ready = [m for m in converted if m.error is None]
        if jobs > 1 and len(ready) > 1:
            with ThreadPoolExecutor(max_workers=jobs) as pool:
                ran = dict(zip([m.candidate for m in ready], pool.map(self.runner.validate, ready)))
        else:
            ran = {m.candidate: self.runner.validate(m) for m in ready}
        for measured in converted:
            self._keep(ran.get(measured.candidate, measured))
        return {c: self.measured[c] for c in candidates}

    def measure_plan(self, candidate: Candidate, plan) -> Measured:
        """One step of a mixed search: `candidate` converted with per-layer precisions `plan` and run."""
        return self.runner.validate(self.converter.convert_plan(candidate, plan))

    def _find_mixed(self, candidate: Candidate) -> Measured:
        if candidate.fmt in self.converter.unsupported:
            return Measured.failed(candidate, self.converter.unsupported[candidate.fmt], unsupported=True, final=False)
        return self.mixed.find(candidate, self.profiles[candidate.target])

    def host_latency(self, measured: Measured, threads: int, runs: int = 50, browser: str | None = None) -> Latency:
        """Single-image latency on this host, measured once per candidate and runtime (TFLite: per thread
        count; TF.js: Node's wasm, or Chromium's `browser` backend through the bundle's own page); with
        `cache_latency`, reused from the cache for a machine of this one's identity."""
        candidate = measured.candidate
        # LiteRT.js runs in Chromium whatever the profile's latency source: on wasm unless it names a backend
        key = runtime_key(candidate.fmt, threads, browser)
        if (candidate, key) not in self._timed:
            slot = f"{candidate.fmt}:{key}:{runs}"
            latency = self._cached_latency(candidate, slot)
            if latency is None:
                latency = self.runner.timed_while_validating(candidate, key, runs) or self.runner.time(
                    self.measured.get(candidate, measured), threads, runs, browser)
                self._store_latency(candidate, slot, dataclasses.asdict(latency))  # unrounded: judged as measured
            self._timed[(candidate, key)] = latency
            if candidate in self.measured:
                self.measured[candidate] = self.measured[candidate].with_latency(key, latency.median_ms)
        return self._timed[(candidate, key)]

    def runoff(self, keys: list[str], threads: int, backend: str | None = None) -> Runoff:
        """The measured candidates `keys` timed against each other in interleaved rounds (`results.Runoff`):
        in LiteRT with `threads`, or with `backend` in LiteRT.js in Chromium; with `cache_latency`, reused
        from the cache for a machine of this one's identity (kept with the first candidate's entry)."""
        by_key = {m.key: m for m in self.measured.values()}
        measured = [by_key[k] for k in keys]
        slot = f"runoff:{f'litertjs-{backend}' if backend else threads}:{','.join(keys)}"
        found = self._cached_latency(measured[0].candidate, slot, Runoff.from_dict)
        if found is not None and list(found.rounds) == keys:
            return found
        rounds = self.runner.runoff(measured, threads, backend)
        runoff = Runoff(dict(zip(keys, (tuple(r) for r in rounds))))
        self._store_latency(measured[0].candidate, slot, runoff.to_dict())
        return runoff

    def on_backend(self, candidate: Candidate, backend: str):
        """(drift dicts or None, outputs or None, error or None) of `candidate` run in Chromium on `backend`,
        once per build (never cached: a browser backend is judged fresh)."""
        if (candidate, backend) not in self._backends:
            drift, outputs, error = self.runner.run_on(self.measured[candidate], backend)
            self._backends[(candidate, backend)] = (None if drift is None else tuple(d.to_dict() for d in drift), outputs, error)
        return self._backends[(candidate, backend)]

    # ---------------------------------------------------------------------------------- the cache

    def from_cache(self, candidate: Candidate) -> bool:
        """Whether `candidate`'s measurement was read from the cache (not measured by this build)."""
        stored = self._keys.get(candidate)
        return stored is not None and stored[1] is not None

    def forget(self, candidate: Candidate) -> None:
        """Drop a cached measurement that did not hold up when checked fresh: its entry is discarded, and
        the candidate is measured anew (never read from the cache again in this build)."""
        stored = self._keys.pop(candidate, None)
        if stored is not None and self.cache is not None:
            self.cache.discard(stored[0])
        self.measured.pop(candidate, None)
        self._timed = {k: v for k, v in self._timed.items() if k[0] != candidate}
        self._distrusted.add(candidate)

    def candidate_key(self, candidate: Candidate) -> str:
        """The cache key of `candidate` in this build (`keys.candidate_key`)."""
        return candidate_key(self.context, candidate, self.converter.shard_size, self.converter.variants.epochs,
                             self.profiles.get(candidate.target))

    def _from_cache(self, candidate: Candidate) -> None:
        key = self.candidate_key(candidate)
        entry = self.cache.get(key)
        if entry is None:
            return
        try:
            measured = Measured.from_record(candidate, entry.record, entry.files)
        except (KeyError, TypeError, ValueError, AttributeError):  # an entry this version cannot read: measure again
            self.cache.discard(key)
            return
        if measured.unsupported and candidate.fmt not in self.converter.unsupported:
            self.converter.unsupported[candidate.fmt] = measured.error
        self._keys[candidate] = (key, entry)
        self.measured[candidate] = measured
        self.progress(f"{candidate.key}: from the cache")

    def _cached_latency(self, candidate: Candidate, slot: str, read=Latency.from_dict):
        stored = self._keys.get(candidate)
        if self.cache is None or not self.cache.latency or stored is None or stored[1] is None:
            return None
        found = self.cache.latency_for(stored[1], slot)
        try:
            return None if found is None else read(found)
        except (KeyError, TypeError, ValueError, AttributeError):  # unreadable: measured again
            return None

    def _store_latency(self, candidate: Candidate, slot: str, record: dict) -> None:
        """Keep a host timing of `candidate` with its cache entry, when latencies are cached."""
        stored = self._keys.get(candidate)
        if self.cache is not None and self.cache.latency and stored is not None:
            self.cache.add_latency(stored[0], slot, record)

    def _keep(self, measured: Measured) -> None:
        """Record `measured`; store it in the cache when it would come out the same again (`final`)."""
        candidate = measured.candidate
        self.measured[candidate] = measured
        if self.cache is None or candidate in self._keys or not measured.final:
            return
        key = self.candidate_key(candidate)
        self.cache.put(key, measured.to_record(), measured.files, {"candidate": candidate.key, "model": self.source.identity})
        self._keys[candidate] = (key, None)

    def close(self) -> None:
        self.converter.close()


def make_evaluator(source, calibration, validation, labels, workdir: Path, progress=None, *, prune_epochs: int = 30,
                   outputs=None, reference=None, profiles=(), sdk=None, shard_size: int = 4 * 1024 * 1024,
                   cache: CandidateCache | None = None, context: BuildContext | None = None, time_runs: int = 0) -> Evaluator:
    """An `Evaluator` for `source` and its images, its parts made here: variants, converter, runner (on the
    `reference` outputs, computed here when not given; timing web artifacts `time_runs` runs as it
    validates them) and the mixed search for `profiles`."""
    workdir = Path(workdir)
    variants = Variants(source, calibration, workdir, prune_epochs, progress)
    converter = Converter(variants, sdk, shard_size, workdir, progress)
    if reference is None:
        reference = reference_outputs(source, validation)[0]
    runner = ArtifactRunner(validation, labels, tuple(outputs or source.outputs), reference, workdir, progress, time_runs=time_runs)
    evaluator = Evaluator(converter, runner, None, {p.name: p for p in profiles}, cache, context, progress)
    evaluator.mixed = MixedSearch(evaluator.measure_plan, variants, labels is not None, progress)
    return evaluator
