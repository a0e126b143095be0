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
from typing import Annotated

import serial
import typer

BAUD = 115200
REBOOT_MARKS = (b"rst:", b"ets ", b"boot:", b"MicroPython v", b"rebooting")
REPL_MARKS = (b">>> ", b"raw REPL", b"paste mode")


class ConsoleError(RuntimeError):
    """str() is the one line shown to field staff."""


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


def one_shot(port: str, words: list[str], timeout: float = 5.0) -> dict:
    ser = open_port(port)
    try:
        return request(ser, words, timeout)
    finally:
        ser.close()


def interactive(port: str, linger: float = 1.0) -> None:
    ser = open_port(port)
    typer.echo(f"connected to {port}; type 'help', Ctrl-D to leave")
    stop = threading.Event()

    def reader() -> None:
        while not stop.is_set():
            try:
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
            ser.write(line.rstrip("\n").encode() + b"\r")
        # End of input (Ctrl-D, or commands piped in): let the last answer arrive.
        time.sleep(linger)
    except KeyboardInterrupt:
        pass
    finally:
        stop.set()
        t.join(1)
        ser.close()


def command(
    port: Annotated[str, typer.Argument(help="serial port, e.g. /dev/ttyUSB0")],
    words: Annotated[
        list[str] | None, typer.Argument(help="one-shot command, e.g. status, readings")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print the JSON answer")] = False,
    timeout: Annotated[float, typer.Option(help="seconds to wait for an answer")] = 5.0,
) -> None:
    """Station serial console: interactive, or one command (status, readings, config, log...)."""
    try:
        if not words:
            interactive(port)
            return
        res = one_shot(port, words, timeout)
    except ConsoleError as e:
        typer.echo(f"envnet console: {e}", err=True)
        raise typer.Exit(3) from None
    typer.echo(json.dumps(res, ensure_ascii=False) if as_json else human(res))
    if not res.get("ok"):
        raise typer.Exit(1)
