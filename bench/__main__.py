"""`python -m bench`: run the benchmark and print its tables (see docs/benchmarks.md)."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from . import report
from .run import LEVELS, ROOT, SERVERS, level_table, run_all

DEFAULT_SERVERS = ["floor", "gateway", "gateway+sep", "original"]
DEFAULT_LEVELS = ["50", "200", "1000", "2000", "burst", "long"]
# Separators on doubles the events per chunk; shown where it is cheap to run.
DEFAULT_ONLY = {"gateway+sep": ["50", "200", "burst", "long"]}


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--servers", default=",".join(DEFAULT_SERVERS), help=f"of {list(SERVERS)}")
    parser.add_argument("--levels", default=",".join(DEFAULT_LEVELS), help=f"of {list(LEVELS)}")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument(
        "--cap", type=float, default=60.0, help="seconds before the streams still open are cut"
    )
    parser.add_argument(
        "--all-pairs", action="store_true", help="run gateway+sep at every level too"
    )
    parser.add_argument("--no-pin", action="store_true", help="do not pin server/client to cores")
    parser.add_argument(
        "--side-by-side",
        action="store_true",
        help="run each server at the same time as a floor of its own (ratios less noisy)",
    )
    parser.add_argument(
        "--no-bracket",
        action="store_true",
        help="run the floor once per level and repetition, not before and after the others",
    )
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    parser.add_argument("--report", type=Path, help="only print the tables of a results file")
    args = parser.parse_args()

    if args.report:
        print(report.markdown(json.loads(args.report.read_text())))
        return 0
    servers = args.servers.split(",")
    levels = args.levels.split(",")
    for name in servers:
        if name not in SERVERS:
            parser.error(f"unknown server {name!r}")
    for name in levels:
        if name not in LEVELS:
            parser.error(f"unknown level {name!r}")
    stamp = time.strftime("%Y%m%d-%H%M%S")
    started = time.monotonic()
    results = run_all(
        servers,
        levels,
        reps=args.reps,
        cap_s=args.cap,
        pin=not args.no_pin,
        logs=args.out / f"logs-{stamp}",
        progress=lambda line: print(line, file=sys.stderr, flush=True),
        only=None if args.all_pairs else DEFAULT_ONLY,
        bracket=None if args.no_bracket else "floor",
        side_by_side="floor" if args.side_by_side else None,
    )
    document = {
        "command": " ".join(["python -m bench", *sys.argv[1:]]),
        "took_s": round(time.monotonic() - started, 1),
        "environment": report.environment(),
        "levels": level_table(),
        "servers": servers,
        "cap_s": args.cap,
        "results": results,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"bench-{stamp}.json"
    path.write_text(json.dumps(document, indent=1))
    (args.out / "latest.json").write_text(json.dumps(document, indent=1))
    print(report.markdown(document))
    print(f"\nresults: {path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
