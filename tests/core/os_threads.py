"""Waiting for a thread to be gone from the OS, not only from Python."""

from __future__ import annotations

import os
import threading
import time


def wait_until_os_thread_ends(thread: threading.Thread, limit: float = 10.0) -> None:
    """torch's native thread-local slot lets go of its objects as the OS thread exits, which can
    be after ``join()`` returns (the exiting thread then waits for the GIL): wait until Linux no
    longer lists the thread, sleeping (which hands the GIL over) in between."""
    task = f"/proc/self/task/{thread.native_id}"
    deadline = time.monotonic() + limit
    while os.path.exists(task) and time.monotonic() < deadline:
        time.sleep(0.01)
