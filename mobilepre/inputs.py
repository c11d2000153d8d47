"""A build's inputs, read once before the search: the model behind its stages, its images, the float
model's reference outputs, each output's kind, the class names and the I/O contract, and the
`BuildContext` every cache key is derived from (`BuildInputs`, made by `load_inputs`)."""

from __future__ import annotations

import dataclasses
import io
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mobilepre import demo
from mobilepre.cache import CandidateCache
from mobilepre.data import DataOptions, dataset_info, load_class_names
from mobilepre.errors import MobilepreError, param, render_params
from mobilepre.keys import BuildContext, has_safety_mark, loaded_key, machine_secret, reference_key, safety_mark
from mobilepre.metrics import ALL_KINDS, CLASS_SCORES, TOLERANCES
from mobilepre.models import OutputSpec, ReferenceChild, isolated_loads, load_model, settle_kinds, with_stages
from mobilepre.options import BuildOptions
from mobilepre.sdk_metadata import SdkContract
from mobilepre.validate import degenerate_reason, reference_outputs


@dataclass(frozen=True)
class BuildInputs:
    """What a build measures against, read and checked once.

    Attributes:
        source (models.SourceModel): the model behind the build's pixel stages.
        calibration (data.Dataset), validation (data.Dataset): the images (validation with its labels).
        data (dict): each image set's count, labels, source and sha256 (`data.dataset_info`).
        reference (list[np.ndarray]): the float model's outputs on the validation images.
        outputs (tuple[OutputSpec, ...]): each output's name and kind, as every profile declares them.
        sdk (SdkContract): the I/O contract and class names every artifact carries.
        source_info (dict): what the reports and manifests say of the model (identity, input, MACs,
            outputs, class names, warnings).
        context (BuildContext): what every cache key of this build is derived from.
        reference_cached (bool): the reference outputs came from the cache (a build checks what it ships
            against outputs run fresh: `run_reference`).
    """

    source: object
    calibration: object
    validation: object
    data: dict
    reference: list
    outputs: tuple
    sdk: SdkContract
    source_info: dict
    context: BuildContext
    reference_cached: bool = False


def load_inputs(options: BuildOptions, cache: CandidateCache | None, profiles, every_profile, progress) -> BuildInputs:
    """Load and check everything the search measures against (`profiles` are those built now, `every_profile`
    every profile of the folder, whose declared output kinds every build of some of them shares)."""
    source, calibration, validation = _load_model_and_images(options, cache)
    source_info = {
        "format": source.format,
        "identity": source.identity,
        "input_dtype": source.input_dtype,
        "input_shape": list(source.input_shape),
        "macs": source.macs,
        "name": Path(source.path).name,
        "parameters": source.parameters,
        "stages": source.stages,
    }
    data = {"calibration": dataset_info(calibration), "validation": dataset_info(validation)}  # hashes each set once
    context = BuildContext.of(source, data, validation.labels)
    reference, reference_cached = _reference_outputs(source, validation, cache, context, progress, options.trust_model)
    # output kinds as every profile of the folder declares them, so that a build of some profiles
    # (one cell of a CI matrix) judges them as the build of all does
    outputs = resolve_outputs(source, every_profile, reference)
    data_warnings = list(dict.fromkeys([*calibration.warnings, *validation.warnings]))
    for warning in data_warnings:
        progress(f"warning: {warning}")
    source_info["warnings"] = data_warnings + _degenerate_warnings(outputs, reference, profiles, options.allow_degenerate_reference, progress)
    class_names = _class_names(options, calibration, validation, outputs, progress)
    if class_names:
        source_info["class_names"] = list(class_names)
    source_info["outputs"] = [spec.to_dict() for spec in outputs]
    sdk = SdkContract(Path(source.path).stem if options.model else "mobilepre_demo_digits", source.input_dtype,
                      tuple(source.input_shape), tuple(options.input_range),
                      tuple((spec.name, spec.kind.value) for spec in outputs), class_names, source.luma)
    return BuildInputs(source, calibration, validation, data, reference, outputs, sdk, source_info, context.with_outputs(outputs, sdk),
                       reference_cached)


def _load_model_and_images(options: BuildOptions, cache: CandidateCache | None = None):
    """The model (loaded first in the sandboxed child unless this file loaded there before) behind the
    build's stages, and its calibration and validation images."""
    model_path = options.model or demo.model_path()
    calibration = options.calibration or (demo.calibration_path() if options.model is None else None)
    validation = options.validation or (demo.validation_path() if options.model is None else None)
    # A file whose very bytes loaded in the sandboxed child before (with this toolchain and code) is
    # loaded here at once: the trial load guards against a crash this file is known not to cause. Its
    # reference inferences still run in a child (`_reference_outputs`). The record that says so skips a
    # safety step, so it counts only with this machine's mark (`keys.safety_mark`): a shared cache
    # cannot forge it.
    secret = machine_secret(cache.root) if cache is not None else None
    # with custom code the trial load is never skipped (the code may have changed since)
    loaded = loaded_key(Path(model_path), options.input_shape, options.trust_model) if secret is not None and not options.custom_objects else None
    entry = cache.get(loaded) if loaded is not None else None
    known = entry is not None and has_safety_mark(entry.record, secret, loaded)
    if entry is not None and not known:
        cache.discard(loaded)
    source = load_model(model_path, trust=options.trust_model, input_shape=options.input_shape, isolate=False if known else None,
                        custom_objects=tuple(options.custom_objects))
    if loaded is not None and not known and source.reference is not None:
        cache.put(loaded, {"loaded": True, "mark": safety_mark(secret, loaded)}, {}, {"loaded": str(model_path)})
    source = with_stages(source, options.input_range if options.frontend else None, luma=options.rgb_input)
    if calibration is None and validation is None:
        raise MobilepreError(f"a build measures drift on images: pass {param('validation')} or {param('calibration')} (folder of images, .npy or .npz)")
    # a photo folder holds every image mode (grey, palette, RGBA, CMYK): converted to the model's channels, said once
    cal = DataOptions(calibration or validation, options.input_range, True, limit=500).load(source)
    val = DataOptions(validation or calibration, options.input_range, True, limit=None, labels=options.labels).load(source)
    return source, cal, val


def _reference_outputs(source, validation, cache: CandidateCache | None, context: BuildContext, progress,
                       trust: bool = False) -> tuple[list, bool]:
    """(the float model's outputs on the validation images, whether they came from the cache): from the
    cache when this model, these stages and these images were run before, else run now and stored."""
    key = reference_key(context)
    entry = cache.get(key) if cache is not None else None
    if entry is not None:
        try:
            with np.load(io.BytesIO(entry.files["reference.npz"]), allow_pickle=False) as stored:
                return [np.asarray(stored[f"output_{i}"], dtype=np.float32) for i in range(int(entry.record["outputs"]))], True
        except (KeyError, TypeError, ValueError, OSError, EOFError, zipfile.BadZipFile):  # unreadable: run the model again
            cache.discard(key)
    reference = run_reference(source, validation, progress, trust)
    if cache is not None:
        buffer = io.BytesIO()
        np.savez(buffer, **{f"output_{i}": np.asarray(values) for i, values in enumerate(reference)})
        cache.put(key, {"outputs": len(reference)}, {"reference.npz": buffer.getvalue()}, {"reference": source.identity})
    return reference, False


def run_reference(source, validation, progress, trust: bool = False) -> list:
    """The float model's outputs on the validation images, run now (never from a cache): in the sandboxed
    child that loaded it, or in a new one when the model was loaded here at once."""
    progress.stage(f"running the float model on {len(validation)} validation images")
    if source.reference is None and isolated_loads():  # loaded here at once (`_load_model_and_images`): infer in a child still
        child = ReferenceChild(Path(source.path), source.format, trust)
        try:
            child.wait_loaded()
            view = child.with_stages(source.stages) if source.stages else child
            return reference_outputs(dataclasses.replace(source, reference=view), validation.images)[0]
        finally:
            child.close()
    return reference_outputs(source, validation.images)[0]


def _class_names(options: BuildOptions, calibration, validation, outputs, progress) -> tuple[str, ...]:
    """The classifier's class names for the bundles' metadata: `--class-names FILE`, else the data's
    (class sub-folders, CSV names), else the demo's digits. A file whose count differs from the model's
    classes is refused; data naming fewer classes than the model has gives no names and a warning."""
    scores = [spec for spec in outputs if spec.kind in CLASS_SCORES]
    classes = int(scores[0].shape[-1]) if len(scores) == 1 and scores[0].shape else None
    if options.class_names is not None:
        names = load_class_names(options.class_names)
        if classes is not None and len(names) != classes:
            raise MobilepreError(f"{param('class_names')} {options.class_names}: {len(names)} names, the model's {scores[0].name} output has {classes} classes: give one name per class")
        return names
    names = validation.class_names or calibration.class_names or (demo.class_names() if options.model is None else ())
    if names and classes is not None and len(names) != classes:
        progress(f"warning: the data names {len(names)} classes, the model has {classes}: bundles carry no class names (pass {param('class_names')} FILE)")
        return ()
    return tuple(names)


def _degenerate_warnings(outputs, reference, profiles, allowed: bool, progress) -> list[str]:
    """A degenerate reference refuses the build when a profile judges class scores on it, unless allowed."""
    warnings = []
    for spec, values in zip(outputs, reference):
        reason = degenerate_reason(values, spec.kind)
        if reason is None:
            continue
        judged = [p.name for p in profiles if any(spec.kind in TOLERANCES[t].kinds and TOLERANCES[t].kinds != ALL_KINDS
                                                  for t in p.drift.limits_for(spec.name, spec.kind))]
        line = (f"the float model's {spec.name} output is degenerate on the validation images: {reason} "
                f"(a wrong {param('input_range')} or broken preprocessing does this)")
        if judged and not allowed:
            raise MobilepreError(f"{line}; profiles {', '.join(judged)} judge its class scores, which would pass "
                                 f"whatever the candidate does: fix the data or pass {param('allow_degenerate_reference')}")
        progress(f"warning: {line}")
        warnings.append(render_params(line))  # the reports say it in the library's words
    return warnings


def resolve_outputs(source, profiles, reference: list) -> tuple:
    """Each output's name and kind: inferred from the model (then from the reference's values), then as the
    profiles declare it. Refused before any conversion: profiles that disagree on a kind, a budget for an
    output the model does not have, or one that has no meaning for the output's kind."""
    specs = settle_kinds(source.outputs, reference)
    names = [spec.name for spec in specs]
    declared: dict = {}
    for profile in profiles:
        for name, budget in profile.drift.outputs.items():
            if name not in names:
                raise MobilepreError(f"profile {profile.name}: [drift.outputs.{name}] names no output of the model: its outputs are {', '.join(names)}")
            if budget.kind is not None:
                if declared.get(name, (budget.kind,))[0] != budget.kind:
                    raise MobilepreError(f"profiles {declared[name][1]} and {profile.name} give output {name} different kinds ({declared[name][0]}, {budget.kind})")
                declared[name] = (budget.kind, profile.name)
    resolved = tuple(
        OutputSpec(s.name, declared[s.name][0], s.shape, f"declared by profile {declared[s.name][1]}") if s.name in declared else s
        for s in specs
    )
    for profile in profiles:
        for spec in resolved:
            budget = profile.drift.outputs.get(spec.name)
            for tolerance, _ in (budget.limits if budget else ()):
                if spec.kind not in TOLERANCES[tolerance].kinds:
                    raise MobilepreError(
                        f"profile {profile.name}: drift.outputs.{spec.name}.{tolerance} has no meaning for output {spec.name}, "
                        f"a {spec.kind} output ({spec.evidence}): remove it, or declare kind = \"...\" for that output"
                    )
    return resolved
