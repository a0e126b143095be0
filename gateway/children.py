"""What the gateway's child processes (log processor, evaluator) do so as never to outlive it."""

from __future__ import annotations

import logging
import os
import signal
import threading
import time

log = logging.getLogger("envnet.gateway")


def die_with_parent(parent: int) -> None:
    """A child of the gateway gets SIGKILL from the kernel when the gateway dies, however it
    dies (Linux PR_SET_PDEATHSIG); if it is already gone, exit now."""
    import ctypes

    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # not Linux: watch_parent below still notices
        pass
    if os.getppid() != parent:
        os._exit(1)


def watch_parent(parent: int, stop) -> None:
    """A SIGKILLed gateway cannot tell its children: they notice and stop themselves."""

    def watch() -> None:
        while True:
            time.sleep(0.2)
            if os.getppid() != parent:
                log.warning("the gateway process is gone; %s stops", threading.current_thread())
                stop()
                return

    threading.Thread(target=watch, daemon=True).start()
