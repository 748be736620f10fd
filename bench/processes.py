"""What the benches share for the worker processes they start."""

from __future__ import annotations

import os
import signal
import subprocess


def stop(process: subprocess.Popen, timeout: float = 30) -> None:
    """SIGTERM, then SIGKILL to its whole session (started with ``start_new_session=True``) if it has not exited."""
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
