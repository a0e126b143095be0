"""A MicroPython unix-port process behind a pseudo-terminal: a "board" for mpremote and pyserial.

Used by the tests (and handy on a laptop without hardware): `PtyBoard(flash_dir)` starts
`micropython` with its stdin/stdout/stderr on the slave side of a pty, cwd = `flash_dir`
(the board's filesystem), and exposes `device` (/dev/pts/N) for `mpremote connect` or
`serial.Serial`. With `script=` it runs that file instead of the REPL (the firmware's
main.py, whose console then reads the pty exactly as a board reads its USB UART).
"""

from __future__ import annotations

import fcntl
import os
import select
import signal
import subprocess
import termios
import threading
import tty
from pathlib import Path

from envnet.devkit.sim import SIM_BOARD_DIR, install_sim_board, micropython_bin


class PtyBoard:
    def __init__(
        self,
        flash_dir: Path,
        script: str | None = None,
        micropypath: str | None = None,
        env: dict | None = None,
    ) -> None:
        self.flash_dir = Path(flash_dir)
        self.flash_dir.mkdir(parents=True, exist_ok=True)
        self.script = script
        self.micropypath = micropypath
        self.env = env or {}
        self.proc: subprocess.Popen | None = None
        self.master: int | None = None
        self.device = ""
        self._fds: list[int] = []

    @classmethod
    def flashed(cls, flash_dir: Path) -> PtyBoard:
        """A board for firmware that `envnet flash` puts in `flash_dir`, running on the
        simulated board (installed here: the simulator's job, never flashed). On an ESP32 /lib
        is on sys.path; the unix port gets it from MICROPYPATH."""
        install_sim_board(flash_dir)
        return cls(flash_dir, micropypath=f"lib:.:{SIM_BOARD_DIR}")

    def start(self) -> PtyBoard:
        # Two pseudo-terminals bridged back to back, as a USB-serial cable is: the child's
        # stdin/stdout sit on the slave of pty A; clients open the slave of pty B (`device`);
        # a thread copies bytes between the two masters.
        a_master, a_slave = os.openpty()
        b_master, b_slave = os.openpty()
        for fd in (a_slave, b_slave):
            tty.setraw(fd)
        # Ctrl-C from a client interrupts running code, as on a board: the board's tty keeps
        # ISIG (the unix REPL switches it off itself while it reads a line) and is the
        # child's controlling terminal.
        attrs = termios.tcgetattr(a_slave)
        attrs[3] |= termios.ISIG
        termios.tcsetattr(a_slave, termios.TCSANOW, attrs)
        self._fds = [a_master, a_slave, b_master, b_slave]
        self.device = os.ttyname(b_slave)
        env = dict(os.environ, **self.env)
        if self.micropypath is not None:
            env["MICROPYPATH"] = self.micropypath
        argv = [micropython_bin()] + ([self.script] if self.script else ["-i"])
        self.proc = subprocess.Popen(
            argv,
            cwd=self.flash_dir,
            env=env,
            stdin=a_slave,
            stdout=a_slave,
            stderr=a_slave,
            start_new_session=True,
            preexec_fn=lambda: fcntl.ioctl(0, termios.TIOCSCTTY, 0),
        )
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._bridge, args=(a_master, b_master), daemon=True)
        self._thread.start()
        return self

    def _bridge(self, a: int, b: int) -> None:
        peer = {a: b, b: a}
        while not self._stop.is_set():
            try:
                ready, _, _ = select.select([a, b], [], [], 0.1)
            except (OSError, ValueError):
                return
            for fd in ready:
                try:
                    data = os.read(fd, 4096)
                except OSError:
                    # EIO on B's master while no client holds the slave open: wait.
                    data = b""
                if data:
                    try:
                        os.write(peer[fd], data)
                    except OSError:
                        pass
                elif fd == a:
                    return  # the board process is gone
            if not ready:
                continue

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
        if getattr(self, "_stop", None):
            self._stop.set()
            self._thread.join(2)
        for fd in getattr(self, "_fds", []):
            try:
                os.close(fd)
            except OSError:
                pass
        self._fds = []

    def __enter__(self) -> PtyBoard:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
