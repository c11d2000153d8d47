"""`mobilepre sign`: every intact bundle of a build output signed (OpenSSF model-signing, `signing`)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from mobilepre.check import Finding, find_bundles, verify_files
from mobilepre.errors import EXIT_FAILED
from mobilepre.manifest import IntegrityError, read_manifest
from mobilepre.signing import SIGNATURE_FILE, sign_bundle


@dataclass(frozen=True)
class SignResult:
    """What `sign` did: the bundles signed, and those refused because they fail their integrity check."""

    root: str
    signed: tuple = ()
    refused: tuple = ()

    @property
    def passed(self) -> bool:
        return not self.refused

    @property
    def exit_code(self) -> int:
        return 0 if self.passed else EXIT_FAILED

    def to_dict(self) -> dict:
        return {"passed": self.passed, "refused": [f.to_dict() for f in self.refused], "root": self.root, "signed": list(self.signed)}

    def to_text(self) -> str:
        lines = [f"signed {name}/{SIGNATURE_FILE}" for name in self.signed]
        lines += [f"NOT SIGNED {f.message}" for f in self.refused]
        return "\n".join(lines)


def sign_bundles(root: Path, private_key: Path) -> SignResult:
    """Sign every bundle under `root` that matches its manifest; a damaged bundle is never signed."""
    signed, refused = [], []
    for bundle in find_bundles(root):
        try:
            verify_files(bundle, read_manifest(bundle))
        except IntegrityError as error:
            refused.append(Finding("integrity", False, f"{bundle.name}: {error}"))
            continue
        sign_bundle(bundle, private_key)
        signed.append(bundle.name)
    return SignResult(str(root), tuple(signed), tuple(refused))
