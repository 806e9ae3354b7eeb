"""Toggle-to-visible: from the start of the toggle request until readers are served the new value.

Readers poll every ``interval`` (5 ms), each request on a new connection (so every server process
a client could reach is sampled), one reader at a time, so that every system gets the same read
load while it writes. The new value counts as visible from the first answer that has it after
the last answer that still had the old one, once readers have seen only the new value for
``settle`` seconds: a value one process serves and another does not yet is not visible yet.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

Read = Callable[[], "bool | None"]


def once(
    toggle: Callable[[bool], Any],
    readers: dict[str, Read],
    target: bool,
    *,
    settle: float = 0.5,
    timeout: float = 30.0,
    interval: float = 0.005,
) -> dict[str, float | None]:
    """Run one toggle to ``target``; return the seconds until each reader saw it (None: never)."""
    seen: dict[str, list[tuple[float, bool | None]]] = {name: [] for name in readers}
    stop = threading.Event()

    def poll(name: str, read: Read) -> None:
        while not stop.is_set():
            try:
                value = read()
            except OSError:
                value = None
            seen[name].append((time.perf_counter(), value))
            stop.wait(interval)

    threads = [threading.Thread(target=poll, args=item, daemon=True) for item in readers.items()]
    for thread in threads:
        thread.start()
    time.sleep(0.05)
    started = time.perf_counter()
    toggle(target)
    deadline = started + timeout
    result: dict[str, float | None] = dict.fromkeys(readers)
    while time.perf_counter() < deadline:
        now = time.perf_counter()
        for name, observations in seen.items():
            snapshot = list(observations)
            last_old = max((t for t, v in snapshot if v != target), default=started)
            first_new = min((t for t, v in snapshot if v == target and t > last_old), default=None)
            if first_new is not None and now - last_old >= settle:
                result[name] = first_new - started
            else:
                result[name] = None
        if all(value is not None for value in result.values()):
            break
        time.sleep(0.02)
    stop.set()
    for thread in threads:
        thread.join(timeout=15)
    return result


def series(
    toggle: Callable[[bool], Any],
    readers: dict[str, Read],
    initial: bool,
    *,
    reps: int,
    settle: float = 0.5,
) -> dict[str, list[float | None]]:
    """``reps`` toggles per reader, alternating the value, each measured with :func:`once`."""
    out: dict[str, list[float | None]] = {name: [] for name in readers}
    value = initial
    for name, read in readers.items():
        for _ in range(reps):
            value = not value
            out[name].append(once(toggle, {name: read}, value, settle=settle)[name])
    return out
