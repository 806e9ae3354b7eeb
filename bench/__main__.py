"""`python -m bench` (make bench) and `python -m bench --peers` (make bench-peers)."""

from __future__ import annotations

import argparse
import os
import signal
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from bench import load, report
from bench.processes import terminating_signals
from bench.suites import run_bench, run_peers


@dataclass(frozen=True)
class Config:
    reps: int  # timed writes per write row (plus warm-up)
    scale_reps: int  # timed toggles per scale row
    read_seconds: float  # wrk duration per endpoint and concurrency
    writers_per_client: int  # toggles per client in the concurrency row
    visibility_reps: int  # toggles per toggle-to-visible row
    quick: bool


def config(args: argparse.Namespace) -> Config:
    quick = bool(args.quick)
    reps = int(os.environ.get("BENCH_REPS") or args.reps or (10 if quick else 40))
    return Config(
        reps=reps,
        scale_reps=int(os.environ.get("BENCH_REPS") or args.reps or (8 if quick else 30)),
        read_seconds=float(
            os.environ.get("BENCH_READ_SECONDS") or args.read_seconds or (2 if quick else 10)
        ),
        writers_per_client=3 if quick else 10,
        visibility_reps=max(3, reps // 2) if not quick else 5,
        quick=quick,
    )


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
        help="comma-separated parts of `make bench`: writes, reads, concurrency, scale",
    )
    parser.add_argument(
        "--max-minutes", type=float, default=40.0, help="stop (and clean up) after this long"
    )
    args = parser.parse_args(argv)
    cfg = config(args)
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
        f"\n",
        flush=True,
    )
    started = time.monotonic()
    with (
        terminating_signals(),
        tempfile.TemporaryDirectory(prefix="stageflow-bench-") as tmp,
    ):
        root = Path(tmp)
        if args.peers:
            rows, samples = run_peers(root, cfg)
        else:
            rows, samples = run_bench(root, cfg, only)
    watchdog.cancel()
    meta["seconds"] = round(time.monotonic() - started, 1)
    print(report.render(rows))
    path = report.save("peers" if args.peers else "bench", meta, rows, samples)
    print(f"took {meta['seconds']:.0f}s; results in {path.relative_to(report.ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
