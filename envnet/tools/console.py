"""`envnet console PORT [COMMAND ...]`: the station's serial console over pyserial.

One-shot (`envnet console /dev/ttyUSB0 status --json`) sends one command with `--json`,
waits for the firmware's JSON answer and prints it (raw with --json, as `key = value`
lines otherwise); exit 1 when the station answers `ok: false`. Without a command it is an
interactive line console. A port that cannot be opened, is held by another program, stays
silent, shows the MicroPython REPL (firmware not running) or a boot banner (rebooting) gets
a one-line explanation and exit code 3 instead of a hang.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import serial
import typer

from envnet.domain import station_actions
from envnet.store import audit
from envnet.store.dialect import redacted

BAUD = 115200
REBOOT_MARKS = (b"rst:", b"ets ", b"boot:", b"MicroPython v", b"rebooting")
REPL_MARKS = (b">>> ", b"raw REPL", b"paste mode")


class ConsoleError(RuntimeError):
    """str() is the one line shown to field staff."""


class NotRecorded(ConsoleError):
    """The station accepted a change but the audit trail could not record it (exit 4)."""

    def __init__(self, message: str, answer: dict) -> None:
        super().__init__(message)
        self.answer = answer


def open_port(port: str, baud: int = BAUD, timeout: float = 0.1) -> serial.Serial:
    try:
        return serial.Serial(port, baud, timeout=timeout, exclusive=True)
    except serial.SerialException as e:
        text = str(e)
        if "exclusive" in text.lower() or "busy" in text.lower() or "lock" in text.lower():
            raise ConsoleError(
                f"{port} is busy: another program (mpremote, a terminal, envnet flash) has it open"
            ) from None
        if "No such file" in text or "could not open" in text.lower():
            raise ConsoleError(
                f"cannot open {port}: no such port (is the station plugged in?)"
            ) from None
        raise ConsoleError(f"cannot open {port}: {text}") from None


def _answer(line: bytes) -> dict | None:
    line = line.strip()
    if not line.startswith(b"{"):
        return None
    try:
        obj = json.loads(line)
    except ValueError:
        return None
    if isinstance(obj, dict) and obj.get("id") == "console" and "ok" in obj:
        return obj
    return None


def request(ser: serial.Serial, words: list[str], timeout: float = 5.0, retries: int = 1) -> dict:
    """Send one console command with --json; return the firmware's JSON answer."""
    line = " ".join(w for w in words if w != "--json") + " --json"
    seen = b""
    rebooting = False
    for attempt in range(retries + 1):
        ser.reset_input_buffer()
        ser.write(b"\r" + line.encode() + b"\r")
        ser.flush()
        deadline = time.monotonic() + timeout
        buf = b""
        while time.monotonic() < deadline:
            chunk = ser.read(ser.in_waiting or 1)
            if not chunk:
                continue
            buf += chunk
            seen = (seen + chunk)[-4096:]
            while b"\n" in buf:
                ln, buf = buf.split(b"\n", 1)
                ans = _answer(ln)
                if ans is not None:
                    return ans
                if any(m in ln for m in REBOOT_MARKS):
                    rebooting = True
                    deadline = max(deadline, time.monotonic() + timeout)  # let it boot
        if any(m in seen for m in REPL_MARKS) and not rebooting:
            raise ConsoleError(
                f"{ser.port}: the board is at the MicroPython REPL, the firmware is not running "
                "(reset the board, or check main.py and config.json)"
            )
        if attempt < retries:
            continue
    if rebooting:
        raise ConsoleError(f"{ser.port}: the station is rebooting; no answer within the timeout")
    if seen.strip():
        tail = seen.strip().splitlines()[-1].decode(errors="replace")[:120]
        raise ConsoleError(
            f"{ser.port}: the station is busy: output but no answer to {words[0]!r} within "
            f"{timeout:.0f} s (last line: {tail!r})"
        )
    raise ConsoleError(
        f"{ser.port}: no answer within {timeout:.0f} s: the port is silent "
        "(wrong port, station powered off, or not running the envnet firmware)"
    )


def human(res: dict) -> str:
    """The firmware's own `key = value` rendering (firmware/lib/console.py _human)."""
    if not res.get("ok"):
        return f"error: {res.get('error')}"
    lines: list[str] = []
    for k, v in res.items():
        if k in ("id", "ok"):
            continue
        if k == "lines":
            lines.extend(v)
        elif isinstance(v, dict):
            lines.append(f"{k}:")
            lines += [f"  {kk} = {vv}" for kk, vv in v.items()]
        else:
            lines.append(f"{k} = {v}")
    return "\n".join(lines) or "ok"


@dataclass(frozen=True)
class AuditTo:
    """Where and as whom a console change is recorded (envnet/store/audit.py, docs/audit.md)."""

    store_path: str | Path  # the SQLite file or the PostgreSQL URL (settings.store.location)
    user: str


def _before(ser: serial.Serial, req: dict, timeout: float) -> dict:
    """What the audit row needs from the station before the change: id, maint, old value."""
    st = request(ser, ["status"], timeout)
    before = {"station_id": st.get("station_id") or "", "maint": st.get("maint")}
    if req["op"] == "config":
        key = next(iter(req["set"]))
        before["config"] = request(ser, ["config", "get", key], timeout).get("config") or {}
    return before


def _record(to: AuditTo, port: str, req: dict, before: dict, res: dict) -> None:
    row = station_actions.station_action(req, res, before)
    if row is None:
        return
    action, detail = row
    try:
        audit.record_to_path(
            to.store_path,
            actor=to.user,
            action=action,
            target=before["station_id"],
            detail={**detail, "via": "console", "port": port},
        )
    except Exception as e:  # noqa: BLE001 - the change is made; say loudly it is not recorded
        raise NotRecorded(
            f"the station accepted {req['op']!r} but the audit trail at {redacted(to.store_path)} "
            f"could not record it: {e}",
            res,
        ) from None


def one_shot(
    port: str, words: list[str], timeout: float = 5.0, audit_to: AuditTo | None = None
) -> dict:
    """One command; with `audit_to`, a change the station accepts gets its audit row."""
    ser = open_port(port)
    try:
        req = station_actions.command_request(words)
        if audit_to is None or req is None:
            return request(ser, words, timeout)
        before = _before(ser, req, timeout)
        res = request(ser, words, timeout, retries=0)  # never apply a change twice
        _record(audit_to, port, req, before, res)
        return res
    finally:
        ser.close()


def _audited_line(ser: serial.Serial, line: str, to: AuditTo, lock: threading.Lock) -> bool:
    """Run a changing command typed at the interactive console through the JSON path, so the
    audit row is written only when the station accepts it. False: not a changing command."""
    req = station_actions.command_request(line.split())
    if req is None:
        return False
    with lock:  # the reader thread waits meanwhile
        try:
            before = _before(ser, req, 5.0)
            res = request(ser, line.split(), 5.0, retries=0)
            _record(to, ser.port, req, before, res)
            text = json.dumps(res, ensure_ascii=False) if "--json" in line.split() else human(res)
        except ConsoleError as e:
            text = f"envnet console: {e}"
    sys.stdout.write(text + "\n")
    sys.stdout.flush()
    return True


def interactive(port: str, linger: float = 1.0, audit_to: AuditTo | None = None) -> None:
    ser = open_port(port)
    typer.echo(f"connected to {port}; type 'help', Ctrl-D to leave")
    stop = threading.Event()
    lock = threading.Lock()

    def reader() -> None:
        while not stop.is_set():
            try:
                with lock:
                    data = ser.read(ser.in_waiting or 1)
            except serial.SerialException:
                typer.echo(f"\n{port}: connection lost (station unplugged or rebooting)")
                stop.set()
                return
            if data:
                sys.stdout.write(data.decode(errors="replace").replace("\r", ""))
                sys.stdout.flush()

    t = threading.Thread(target=reader, daemon=True)
    t.start()
    try:
        for line in sys.stdin:
            if stop.is_set():
                break
            if audit_to is not None and _audited_line(ser, line.strip(), audit_to, lock):
                continue
            ser.write(line.rstrip("\n").encode() + b"\r")
        # End of input (Ctrl-D, or commands piped in): let the last answer arrive.
        time.sleep(linger)
    except KeyboardInterrupt:
        pass
    finally:
        stop.set()
        t.join(1)
        ser.close()
