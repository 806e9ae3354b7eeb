"""`python -m bench` (make bench) and `python -m bench --peers` (make bench-peers)."""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys
import tempfile
import threading
import time
from dataclasses import asdict
from pathlib import Path

from bench import load, report
from bench.config import config
from bench.processes import terminating_signals
from bench.suites import run_bench, run_peers


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="few repetitions (< 2 minutes)")
    parser.add_argument("--reps", type=int, help="timed writes per row (env BENCH_REPS)")
    parser.add_argument(
        "--read-seconds", type=float, help="seconds per read load run (env BENCH_READ_SECONDS)"
    )
    parser.add_argument("--peers", action="store_true", help="compare with Unleash 8")
    parser.add_argument(
        "--only",
        default="",
        help="comma-separated parts of `make bench`: writes, reads, concurrency, scale, "
        "replicas, hooks, policies, dashboard, streams",
    )
    parser.add_argument(
        "--policies",
        choices=("seed", "off", "all"),
        help="the base repository's manifest policies: the starter's (default), none, or every "
        "kind (env BENCH_POLICIES)",
    )
    parser.add_argument(
        "--max-minutes", type=float, default=40.0, help="stop (and clean up) after this long"
    )
    parser.add_argument(
        "--keep", action="store_true", help="keep the temporary data dirs and server logs"
    )
    parser.add_argument(
        "--wait-quiet",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="first wait up to this long for other work on the machine to stop",
    )
    args = parser.parse_args(argv)
    cfg = config(args)
    deadline = time.monotonic() + args.wait_quiet
    while time.monotonic() < deadline and report.busy_cpus(2.0) > 0.3:
        pass
    only = {part.strip() for part in args.only.split(",") if part.strip()}

    # Bounded whatever happens: past the limit the run stops itself, and cleanup still runs.
    watchdog = threading.Timer(args.max_minutes * 60, os.kill, (os.getpid(), signal.SIGTERM))
    watchdog.daemon = True
    watchdog.start()
    meta = {
        **report.machine(),
        "load_generator": load.tool(),
        "config": asdict(cfg),
        "command": " ".join([Path(sys.executable).name, "-m", "bench", *(argv or sys.argv[1:])]),
    }
    print(
        f"# Stageflow bench ({'peers' if args.peers else 'bench'}) — {meta['date']}\n"
        f"machine: {meta['nproc']} cores, {meta['cpu']}, {meta['memory_gib']} GiB; "
        f"load generator: {meta['load_generator']}; reps {cfg.reps}, reads {cfg.read_seconds:g}s"
        f"\nat start: load average {meta['load_average_at_start']}, "
        f"{meta['cpus_busy_with_other_work_at_start']} CPUs busy with other work\n",
        flush=True,
    )
    if meta["cpus_busy_with_other_work_at_start"] > 0.3:
        print("warning: other work is running on this machine; the numbers will be noisy\n")
    if load.tool() != "wrk":
        print(
            "note: wrk is not installed (apt-get install -y wrk); the Python load generator "
            "may limit the read numbers\n"
        )
    started = time.monotonic()
    workspace: contextlib.AbstractContextManager[str] = (
        contextlib.nullcontext(tempfile.mkdtemp(prefix="stageflow-bench-"))
        if args.keep
        else tempfile.TemporaryDirectory(prefix="stageflow-bench-")
    )
    with terminating_signals(), workspace as tmp:
        root = Path(tmp)
        if args.keep:
            print(f"keeping the servers' data and logs in {root}\n", flush=True)
        if args.peers:
            rows, samples = run_peers(root, cfg)
        else:
            rows, samples = run_bench(root, cfg, only)
    watchdog.cancel()
    meta["seconds"] = round(time.monotonic() - started, 1)
    meta["load_average_at_end"] = report.load_average()
    print(report.render(rows))
    path = report.save("peers" if args.peers else "bench", meta, rows, samples)
    print(f"took {meta['seconds']:.0f}s; results in {path.relative_to(report.ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
