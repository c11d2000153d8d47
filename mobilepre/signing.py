"""Signing bundles with OpenSSF model-signing (elliptic-curve keys, offline), and verifying them.

A bundle's `manifest.json` seal catches damage; anyone can re-seal an edited manifest. A signature
over every file of the bundle, made with a private key kept in CI secrets and verified with the
public key kept in the repository, catches a deliberate edit too. The signature is the bundle's
`signature.sig` (a Sigstore bundle, as `model_signing` writes it); it covers every other file.
"""

from __future__ import annotations

from pathlib import Path

from mobilepre.errors import MobilepreError, param

SIGNATURE_FILE = "signature.sig"


def _hashing_config():
    # model_signing pulls in sigstore and cryptography (about a second): imported when signing is asked for.
    from model_signing import hashing

    return hashing.Config().set_ignored_paths(paths=[SIGNATURE_FILE], ignore_git_paths=False)


def sign_bundle(bundle: Path, private_key: Path, password: str | None = None) -> Path:
    """Sign every file of `bundle` with the EC private key (PEM) at `private_key`; return the signature."""
    from model_signing import signing

    key = _key_file(private_key, param('private_key'))
    signature = Path(bundle) / SIGNATURE_FILE
    try:
        signing.Config().set_hashing_config(_hashing_config()).use_elliptic_key_signer(
            private_key=key, password=password
        ).sign(Path(bundle), signature)
    except (ValueError, TypeError) as error:  # cryptography's words for a key that is not an EC private key
        raise MobilepreError(f"{param('private_key')} {key}: cannot sign with it ({_first_line(error)}): give an elliptic-curve private key in PEM") from None
    return signature


def signature_problem(bundle: Path, public_key: Path) -> str | None:
    """Why `bundle` is not signed by the private key of `public_key` as it is now (None when it is)."""
    from model_signing import verifying

    signature = Path(bundle) / SIGNATURE_FILE
    if not signature.is_file() or signature.is_symlink():
        return f"it has no {SIGNATURE_FILE}: the bundle is unsigned"
    key = _key_file(public_key, param('public_key'))
    try:
        verifying.Config().set_hashing_config(_hashing_config()).use_elliptic_key_verifier(public_key=key).verify(
            Path(bundle), signature
        )
    except Exception as error:  # model_signing raises ValueError, and its parsers their own errors
        return f"the signature does not verify with {key.name} ({_first_line(error)})"
    return None


def _key_file(path: Path, flag: str) -> Path:
    path = Path(path)
    if not path.is_file():
        raise MobilepreError(f"{flag} {path} is not a key file: give a PEM file")
    return path


def _first_line(error: Exception) -> str:
    text = str(error).strip() or type(error).__name__
    return text.splitlines()[0][:200]


