"""`envnet release`: build a signed firmware bundle for over-the-air updates (docs/ota.md).

The bundle holds the device files of `envnet flash` (`device_sources()`: nothing of the
simulated board in firmware/sim/), compiled with mpy-cross, except `main.py`, which stays
source. Paths are relative to a firmware slot on the station. The bundle is built in a
temporary directory beside the target and renamed into place, so the server never serves half
a release; an existing version is never overwritten. The manifest and signature rules live in
envnet/domain/ota/manifest.py (data: envnet/core/contract/ota_manifest.json).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from envnet.domain.ota.manifest import (
    DEFAULT_KEY_ID,
    MIN_KEY_BYTES,
    PATH_PART_RE,
    VERSION_RE,
    BundleError,
    sign,
    verify_bundle,
    version_ok,
)
from envnet.tools.flash import FIRMWARE, FlashError, device_sources, mpy_args, mpy_cross_bin


def _compile(src: Path, dest: str, files_dir: Path) -> str:
    """Copy or compile one device file into files_dir; -> its path in the bundle."""
    if dest == "main.py":  # the boot entry stays source (docs/ota.md)
        out_rel = dest
        (files_dir / out_rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, files_dir / out_rel)
        return out_rel
    out_rel = dest[: -len(".py")] + ".mpy"
    out = files_dir / out_rel
    out.parent.mkdir(parents=True, exist_ok=True)
    argv = [mpy_cross_bin(), *mpy_args(src), "-o", str(out), str(src)]  # as `envnet flash --mpy`
    r = subprocess.run(argv, capture_output=True, text=True)
    if r.returncode:
        raise BundleError(f"mpy-cross failed on {src}: {r.stderr.strip()}")
    return out_rel


def build_bundle(
    version: str,
    key: bytes,
    out: Path,
    key_id: str = DEFAULT_KEY_ID,
    confirm_deadline_s: int = 300,
    firmware: Path = FIRMWARE,
    progress: Callable[[str, int, int], None] | None = None,
    created: int | None = None,
) -> Path:
    """Write `<out>/<version>/` and return it. progress(step, done, total) if given."""
    if not version_ok(version):
        raise BundleError(f"version {version!r} must match {VERSION_RE.pattern} without '..'")
    if len(key) < MIN_KEY_BYTES:
        raise BundleError(f"fleet key: {len(key)} bytes, need at least {MIN_KEY_BYTES}")
    if not key_id or not PATH_PART_RE.match(key_id):
        raise BundleError(f"key id {key_id!r} must be plain characters")
    if not 10 <= confirm_deadline_s <= 86_400:
        raise BundleError("confirm deadline must be 10..86400 s")
    out = Path(out)
    final = out / version
    if final.exists():
        raise BundleError(f"{final} already exists: a release is never rebuilt; pick a new version")
    sources = device_sources(firmware)
    if not (firmware / "main.py").is_file():
        raise BundleError(f"{firmware}: no main.py")
    out.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{version}.", dir=out))
    try:
        files_dir = tmp / "files"
        files_dir.mkdir()
        done = 0
        with ThreadPoolExecutor(max_workers=min(4, os.cpu_count() or 1)) as ex:
            futures = [ex.submit(_compile, src, dest, files_dir) for src, dest in sources]
            rels = []
            for f in futures:
                try:
                    rels.append(f.result())
                except FlashError as e:
                    raise BundleError(str(e)) from None
                done += 1
                if progress:
                    progress("compile", done, len(sources))
        entries = []
        for i, rel in enumerate(rels):
            data = (files_dir / rel).read_bytes()
            entries.append(
                {"path": rel, "size": len(data), "sha256": hashlib.sha256(data).hexdigest()}
            )
            if progress:
                progress("hash", i + 1, len(rels))
        manifest = {
            "v": 1,
            "version": version,
            "created": int(time.time()) if created is None else created,
            "key_id": key_id,
            "confirm_deadline_s": confirm_deadline_s,
            "files": entries,
        }
        raw = json.dumps(manifest, separators=(",", ":")).encode()
        (tmp / "manifest.json").write_bytes(raw)
        (tmp / "manifest.sig").write_text(sign(raw, key) + "\n")
        verify_bundle(tmp, key)
        tmp.chmod(0o755)
        try:
            # rename() of a directory fails if the target appeared meanwhile: never overwrite.
            os.rename(tmp, final)
        except OSError:
            raise BundleError(f"{final} already exists: a release is never rebuilt") from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final
