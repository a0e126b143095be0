"""An OTA bundle's manifest and signature: the rules a station checks before it installs one.

A bundle is `<releases_dir>/<version>/` with `manifest.json` (version, files with size and
SHA-256), `manifest.sig` (lowercase hex HMAC-SHA256 of the exact manifest bytes, keyed with
the fleet key) and `files/<path>`. `envnet release` (envnet/tools/release.py) builds one; the
server checks it here when it is registered. See docs/ota.md.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from pathlib import Path
from typing import Any

VERSION_RE = re.compile(r"^[0-9A-Za-z][0-9A-Za-z._+-]{0,63}$")
PATH_PART_RE = re.compile(r"^[0-9A-Za-z._-]+$")
DEFAULT_KEY_ID = "fleet-1"
MIN_KEY_BYTES = 16


class BundleError(ValueError):
    """str() is the one line shown to the operator."""


def read_key_file(path: Path) -> bytes:
    """The fleet key: a file holding it as hex (whitespace ignored), at least 16 bytes."""
    try:
        text = Path(path).read_text().strip()
    except OSError as e:
        raise BundleError(f"fleet key file {path}: {e.strerror or e}") from None
    try:
        key = bytes.fromhex(text)
    except ValueError:
        raise BundleError(f"fleet key file {path}: not a hex string") from None
    if len(key) < MIN_KEY_BYTES:
        raise BundleError(f"fleet key file {path}: {len(key)} bytes, need at least {MIN_KEY_BYTES}")
    return key


def sign(manifest: bytes, key: bytes) -> str:
    return hmac.new(key, manifest, hashlib.sha256).hexdigest()


def verify_signature(manifest: bytes, sig: bytes | str, key: bytes) -> bool:
    text = sig.decode("ascii", "replace") if isinstance(sig, bytes) else sig
    return hmac.compare_digest(sign(manifest, key), text.strip().lower())


def safe_path(p: object) -> bool:
    """A manifest path: relative, `/`-separated, no `..`/`.`/empty parts, plain characters."""
    if not isinstance(p, str) or not p or p.startswith("/") or len(p) > 96:
        return False
    return all(part not in (".", "..") and PATH_PART_RE.match(part) for part in p.split("/"))


def verify_bundle(bundle: Path, key: bytes) -> dict[str, Any]:
    """Check a bundle as a station would: signature first, then every file. -> manifest."""
    bundle = Path(bundle)
    try:
        raw = (bundle / "manifest.json").read_bytes()
        sig = (bundle / "manifest.sig").read_bytes()
    except OSError as e:
        raise BundleError(f"{bundle}: {e.strerror or e}: {e.filename}") from None
    if not verify_signature(raw, sig, key):
        raise BundleError(f"{bundle}: bad signature")
    try:
        m = json.loads(raw)
    except ValueError:
        raise BundleError(f"{bundle}: manifest.json is not JSON") from None
    if not isinstance(m, dict) or m.get("v") != 1 or not isinstance(m.get("files"), list):
        raise BundleError(f"{bundle}: manifest.json is not a v1 manifest")
    paths = set()
    for f in m["files"]:
        p = f.get("path") if isinstance(f, dict) else None
        if not safe_path(p) or p in paths:
            raise BundleError(f"{bundle}: bad path {p!r} in manifest")
        paths.add(p)
        try:
            data = (bundle / "files" / p).read_bytes()
        except OSError:
            raise BundleError(f"{bundle}: {p} missing") from None
        if len(data) != f.get("size"):
            raise BundleError(f"{bundle}: {p} is {len(data)} bytes, manifest says {f.get('size')}")
        if hashlib.sha256(data).hexdigest() != f.get("sha256"):
            raise BundleError(f"{bundle}: hash mismatch on {p}")
    if "main.py" not in paths:
        raise BundleError(f"{bundle}: no main.py")
    return m
