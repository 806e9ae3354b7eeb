"""How much `python -m bench` measures: repetitions and durations, from flags and BENCH_* env."""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass


@dataclass(frozen=True)
class Config:
    reps: int  # timed writes per write row (plus warm-up)
    scale_reps: int  # timed toggles per scale row
    read_seconds: float  # wrk duration per endpoint and concurrency
    writers_per_client: int  # toggles per client in the concurrency row
    visibility_reps: int  # toggles per toggle-to-visible row
    quick: bool
    # The base repository's manifest policies: the starter's ("seed"), none ("off", to compare
    # the write rows with commits from before policies existed) or every kind ("all").
    policies: str = "seed"


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
        policies=getattr(args, "policies", None) or os.environ.get("BENCH_POLICIES") or "seed",
    )
