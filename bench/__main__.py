"""`python -m bench [NAME ...]`: run the benchmarks (all by default)."""

from __future__ import annotations

import argparse
import asyncio
import importlib

BENCHMARKS = ["boot", "exec_latency", "fs_throughput", "memory", "images", "cluster"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("names", nargs="*", metavar="NAME", help=f"any of {BENCHMARKS}")
    args = parser.parse_args()
    unknown = set(args.names) - set(BENCHMARKS)
    if unknown:
        parser.error(f"unknown benchmark(s) {sorted(unknown)}; choose from {BENCHMARKS}")
    for name in args.names or BENCHMARKS:
        module = importlib.import_module(f"bench.{name}")
        asyncio.run(module.main())


if __name__ == "__main__":
    main()
