"""`mobilepre plan`: the build matrix (model x profile, or x groups of profiles sharing candidates) for CI."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

from mobilepre.candidates import candidates_for
from mobilepre.errors import MobilepreError, param
from mobilepre.profiles import default_profiles_dir, load_profiles

GROUPINGS = ("profile", "shared")


@dataclass(frozen=True)
class Cell:
    """One build job: a model and the profiles it builds.

    Attributes:
        model (str): the model's path as given ("" for the embedded demo).
        name (str): the model's name (file stem): parts of one model merge into one output.
        profiles (tuple[str, ...]): the profiles this job builds (`build --profile a,b`).
        part (str): a name for the job's output, unique in the plan (an artifact name in CI).
        candidates (int): how many distinct candidates these profiles may try.
    """

    model: str
    name: str
    profiles: tuple
    part: str
    candidates: int

    def to_dict(self) -> dict:
        return {"candidates": self.candidates, "model": self.model, "name": self.name, "part": self.part, "profiles": ",".join(self.profiles)}


@dataclass(frozen=True)
class Plan:
    """The matrix: `to_dict()` is what GitHub Actions' `strategy.matrix` takes (`{"include": [...]}`)."""

    cells: tuple

    def to_dict(self) -> dict:
        return {"include": [c.to_dict() for c in self.cells]}

    def to_json(self) -> str:
        """One line, as `$GITHUB_OUTPUT` wants it."""
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))

    def to_text(self) -> str:
        lines = [f"{'part':<40} {'candidates':>10}  model"]
        lines += [f"{c.part:<40} {c.candidates:>10}  {c.model or '(demo)'}" for c in self.cells]
        lines.append(f"{len(self.cells)} build jobs; merge each model's parts with `mobilepre merge OUT PART...`")
        return "\n".join(lines)


def plan(models=(), profiles: Path | None = None, by: str = "profile") -> Plan:
    """The build jobs for `models` (none: the demo) and the profiles in `profiles`: one per model and
    profile (`by` "profile"), or one per model and group of profiles that share a candidate (`by`
    "shared": a candidate converted and validated once serves every profile of its group)."""
    if by not in GROUPINGS:
        raise MobilepreError(f"{param('by')} {by!r}: expected one of {', '.join(GROUPINGS)}")
    found = load_profiles(profiles or default_profiles_dir())
    keys = {p.name: {c.key for cs in candidates_for(p).values() for c in cs} for p in found}
    groups = [[p.name] for p in found] if by == "profile" else _sharing(found, keys)
    names: dict[str, str] = {}
    cells = []
    for model in models or [None]:
        name = "demo" if model is None else _model_name(Path(model))
        if name in names:
            raise MobilepreError(f"models {names[name]} and {model} are both named {name}: parts of a plan are named by model, rename one")
        names[name] = str(model)
        for group in groups:
            part = f"{name}--{'+'.join(group)}"
            cells.append(Cell("" if model is None else str(model), name, tuple(group), part, len(set().union(*(keys[g] for g in group)))))
    return Plan(tuple(cells))


def _model_name(model: Path) -> str:
    if not model.exists():
        raise MobilepreError(f"{model}: no such model file or SavedModel folder")
    name = model.name if model.is_dir() else model.stem
    return re.sub(r"[^A-Za-z0-9._-]", "_", name) or "model"


def _sharing(profiles, keys: dict) -> list[list[str]]:
    """Profiles joined when they share a candidate (transitively), in profile order."""
    groups: list[list[str]] = []
    for profile in profiles:
        joined = [g for g in groups if any(keys[profile.name] & keys[other] for other in g)]
        merged = [name for g in joined for name in g] + [profile.name]
        groups = [g for g in groups if g not in joined] + [merged]
    order = [p.name for p in profiles]
    return sorted((sorted(g, key=order.index) for g in groups), key=lambda g: order.index(g[0]))
