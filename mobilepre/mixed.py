"""Mixed precision found per profile: the fewest layers raised above the lowest precision the device
allows until the profile's drift budgets hold, every step verified in the real runtime."""

from __future__ import annotations

import dataclasses
import time
from typing import Callable

from mobilepre import quantize
from mobilepre.budgets import judge_drift
from mobilepre.measured import Measured
from mobilepre.progress import as_reporter
from mobilepre.quantize.export import INPUT_NAME
from mobilepre.quantize.mixed import MixedPrecision, rank_tflite_ops, rank_tfjs_weights
from mobilepre.quantize.settings import Format, Mode, blocks_allowed, engine_format, mixed_ladder

# Verified steps (a conversion and a run in the format's runtime) one mixed search may take.
MAX_STEPS = 8
# Calibration images the per-layer errors are measured on (float and quantized models side by side).
RANK_IMAGES = 16
# Verified steps, beyond MAX_STEPS, that bring raised dense layers back down to int4 in blocks of 32.
BLOCK_STEPS = 3
BLOCKS = Mode.INT4_BLOCKWISE


def _cost(error, low: Mode, high: Mode) -> float:
    """Bytes raising one op from `low` to `high` adds: its parameters times the bytes each gains."""
    return error.bytes_at(high) - error.bytes_at(low)


def per_byte(ranking: list, low: Mode, high: Mode) -> list:
    """The ops in the order a search raises them: the most drift removed per byte it costs first (the
    op's measured error share over the bytes raising it adds; an op that holds no weights costs none and
    comes first), ties by error then name. Greedy by ratio: the knapsack's classic approximation, each
    prefix verified in the runtime by the search."""
    def ratio(e):
        cost = _cost(e, low, high)
        share = 10 ** (e.error / 10)
        return float("inf") if cost <= 0 else share / cost
    return sorted(ranking, key=lambda e: (-ratio(e), -e.error, e.name))


def _cumulative(ranking: list, low: Mode, high: Mode) -> list:
    """Bytes added by raising the first 1, 2, ... ops of `ranking`."""
    total, out = 0.0, []
    for e in ranking:
        total += _cost(e, low, high)
        out.append(total)
    return out


def _into_blocks(best: tuple, step: Callable) -> tuple:
    """The passing plan `best` with its dense layers raised from int4 to int8 weights brought back down to
    int4 in blocks of 32 (a scale per 32 inputs: 0.5625 B a weight, not 1) wherever drift still holds,
    each try verified: all of them at once, else one at a time, the largest first, within `BLOCK_STEPS`.
    A layer that stays in int8 weights is one whose blocks missed."""
    plan, measured, ranking = best
    if plan.base is not Mode.INT4:
        return best
    layers = {e.name: e for e in ranking}
    movable = sorted((name for name, mode in plan.raised if mode is Mode.DYNAMIC and name in layers and layers[name].blockwise),
                     key=lambda name: (-layers[name].weights, name))
    tries = [movable] + ([[name] for name in movable] if len(movable) > 1 else [])
    for names in tries[:BLOCK_STEPS]:
        lower = MixedPrecision(plan.base, tuple((name, BLOCKS if name in names else mode) for name, mode in plan.raised))
        if lower == plan:
            continue
        result, passed = step(lower)
        if passed and result.error is None and result.size_bytes < measured.size_bytes:
            plan, measured = lower, result
            if names is movable:
                break
    return plan, measured, ranking


class MixedSearch:
    """The mixed-precision search, a strategy over a measure function: it owns its rankings (the layers
    by measured error, per format and base precision, shared by every profile's search in a build).

    Args:
        measure_plan (callable): (candidate, MixedPrecision) -> `Measured`, converted and run in the
            format's runtime.
        variants (variants.Variants): the float model and its export, which the rankings convert.
        labels (bool): drift was measured against labelled images.
        progress: a reporter or callable.
    """

    def __init__(self, measure_plan: Callable, variants, labels: bool = False, progress=None):
        self.measure_plan = measure_plan
        self.variants = variants
        self.labels = labels
        self.progress = as_reporter(progress)
        self._rankings: dict = {}

    def find(self, candidate, profile) -> Measured:
        """The mixed model for `profile`: from the lowest precision of the format's ladder, the worst layers
        by measured error (or, when the profile prefers size or the size budget cannot hold every raise,
        those removing the most error per byte they cost, `per_byte`) raised one level, 1, 2, 4... of them then bisected to the fewest
        that meet the profile's drift budgets, never more than the size budget leaves room for (predicted from the base file's bytes and each raise's cost; every step is then
        measured); when raising every layer one level is not enough, the next level up the ladder starts
        over from there. At most `MAX_STEPS` verified steps. A passing plan's dense layers raised from int4 to
        int8 weights then come back down to int4 in blocks of 32 where drift still holds (`_into_blocks`, at
        most `BLOCK_STEPS` more steps; TFLite files for LiteRT, when the ladder rises from int4 to dynamic).

        Returns the `Measured` of the fewest-raised passing step, or of the highest-precision step tried
        when none passed (judging then fails it on drift), with `mixed` saying what was raised, what it
        cost, every step and, when the size budget stopped it, how far it got (`at_size_budget`).
        """
        fmt = candidate.fmt
        levels = mixed_ladder(fmt, profile.modes_for(str(fmt)))
        steps, tried = [], {}

        def step(plan: MixedPrecision):
            if plan not in tried:
                measured = self.measure_plan(candidate, plan)
                verdict = judge_drift(profile, measured.measurement(self.labels))
                tried[plan] = (measured, verdict.passed)
                blocked = sum(1 for _, mode in plan.raised if mode is BLOCKS)
                steps.append({"base": str(plan.base), "bytes": measured.size_bytes, "passed": verdict.passed, "raised": len(plan.raised),
                              **({"in_blocks": blocked} if blocked else {}), **({"error": measured.error} if measured.error else {})})
                self.progress(f"[{profile.name}] {candidate.key}: {plan.base} with {len(plan.raised)} raised"
                              f"{f' ({blocked} in int4 blocks)' if blocked else ''}, "
                              f"{measured.size_bytes:,} B, {'drift within budget' if verdict.passed else measured.error or 'drift over budget'}")
            return tried[plan]

        if not levels:
            return Measured.failed(candidate, f"profile {profile.name} gives {fmt} layers no two precisions to mix", final=False)
        measured, passed = step(MixedPrecision(levels[0]))  # nothing raised: no ranking needed
        best = (MixedPrecision(levels[0]), measured, []) if passed else None
        last = (MixedPrecision(levels[0]), measured, [])
        if measured.error is not None:
            return measured
        room = profile.budget.max_size  # raising stops where the predicted file would pass it
        base_bytes, at_budget, ranked_by = measured.size_bytes, None, "measured error"
        for low, high in zip(levels, levels[1:]):
            if best is not None or len(steps) >= MAX_STEPS:
                break
            try:
                ranking = self.ranking(fmt, low)
            except quantize.QuantizeError as error:
                return Measured.failed(candidate, str(error), final=False)
            # worst error first (the fewest raised); the most error removed per byte first (the fewest bytes)
            # when the profile prefers size, or when the size budget cannot hold every raise of this level
            if room is not None and base_bytes + sum(_cost(e, low, high) for e in ranking) > room:
                ranking, ranked_by = per_byte(ranking, low, high), "error removed per byte (the size budget binds)"
            elif profile.prefer == "size":
                ranking, ranked_by = per_byte(ranking, low, high), "error removed per byte (the profile prefers size)"
            else:
                ranked_by = "measured error"
            spent = _cumulative(ranking, low, high)
            fits = len(ranking) if room is None else sum(1 for cost in spent if base_bytes + cost <= room)

            def plan(n, low=low, high=high, ranking=ranking):
                return MixedPrecision(low, tuple((e.name, high) for e in ranking[:n]))

            failed, n = 0, 1  # (n = 0 of a level above the first is the level below with every layer raised)
            while ranking and fits and len(steps) < MAX_STEPS:
                n = min(n, fits)
                measured, passed = step(plan(n))
                last = (plan(n), measured, ranking)
                if measured.error is not None:
                    return measured
                if passed:
                    best = last
                    break
                failed = n
                if n == fits:
                    break
                n = min(fits, 2 * n)
            while best is not None and len(best[0].raised) - failed > 1 and len(steps) < MAX_STEPS:
                middle = (failed + len(best[0].raised)) // 2  # the fewest raised that still pass
                measured, passed = step(plan(middle))
                if passed:
                    best = (plan(middle), measured, ranking)
                else:
                    failed = middle
            if best is None and fits < len(ranking):
                at_budget = {"raised": fits, "bytes": last[1].size_bytes, "max_size": room, "ops": len(ranking), "base": str(low),
                             "note": (f"the size budget leaves room to raise {fits} of {len(ranking)} {low} ops (the most drift "
                                      f"removed per byte first); with them the file is {last[1].size_bytes:,} B and drift still misses")}
                break
            base_bytes += spent[-1] if spent else 0
        if best is not None and blocks_allowed(fmt, profile.modes_for(str(fmt))):
            best = _into_blocks(best, step)
        plan, measured, ranking = best or last
        errors = {e.name: e for e in ranking}
        position = {e.name: i for i, e in enumerate(ranking)}
        return dataclasses.replace(measured, mixed={
            "base": str(plan.base),
            "ladder": [str(m) for m in levels],
            "raised": [
                {
                    "bytes": round(_cost(errors[name], plan.base, mode)),
                    "error_db": round(errors[name].error, 3),
                    "layer": errors[name].layer,
                    "name": name,
                    "to": str(mode),
                }
                for name, mode in sorted(plan.raised, key=lambda r: position[r[0]])
            ],
            "ranked_by": ranked_by,
            "steps": steps,
            **({"at_size_budget": at_budget} if at_budget and best is None else {}),
        })

    def ranking(self, fmt: Format, base: Mode):
        """The layers of the unpruned model `base` quantizes, worst first; measured once per search object
        (every profile's mixed search from the same base shares it; `per_byte` orders them for raising)."""
        fmt = engine_format(fmt)  # a LiteRT.js model is a .tflite: ranked as one
        key = (fmt, base)
        if key not in self._rankings:
            started = time.perf_counter()
            model, directory, _ = self.variants.get(fmt=str(fmt))
            if fmt is Format.TFLITE:  # the float file the quantizer modes start from, with its tensor names
                ranked = rank_tflite_ops(quantize.float_tflite(directory), base, self.variants.calibration[:RANK_IMAGES], INPUT_NAME)
            else:
                settings = quantize.QuantizationSettings(fmt, Mode.FLOAT32, strip_metadata=False)  # keeps weight names
                ranked = rank_tfjs_weights(quantize.convert(model, settings, saved_model_dir=directory).files)
            self._rankings[key] = ranked
            self.progress(f"ranked {len(ranked)} {fmt} layers at {base} by measured error in {time.perf_counter() - started:.1f} s")
        return self._rankings[key]
