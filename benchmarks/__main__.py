"""`python -m benchmarks render | check | measure NAME… | list`: the docs' figures from their result files."""

from __future__ import annotations

import argparse
import sys

from benchmarks.figures import FiguresError, docs, render_all, stale, unused


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("render", help="rewrite every figures block from its result file")
    commands.add_parser("check", help="exit 1 when a block differs from its data or a result file is shown nowhere")
    commands.add_parser("list", help="the measurements and the commands they run")
    measuring = commands.add_parser("measure", help="re-measure, write benchmarks/NAME.json, render the docs")
    measuring.add_argument("names", nargs="+", metavar="NAME")
    args = parser.parse_args(argv)
    try:
        if args.command == "render":
            for page in render_all(docs()):
                print(f"rendered {page}")
        elif args.command == "check":
            problems = stale(docs()) + [f"{source}: no doc shows it" for source in unused(docs())]
            for problem in problems:
                print(problem, file=sys.stderr)
            return 1 if problems else 0
        else:
            from benchmarks.measure import MEASUREMENTS, measure

            if args.command == "list":
                for name, measurement in MEASUREMENTS.items():
                    print(f"{name:13} {measurement.command}")
                return 0
            unknown = [name for name in args.names if name not in MEASUREMENTS]
            if unknown:
                print(f"unknown measurement(s) {', '.join(unknown)}; known: {', '.join(MEASUREMENTS)}", file=sys.stderr)
                return 1
            for name in args.names:
                print(f"measuring {name}: {MEASUREMENTS[name].command}", flush=True)
                print(f"wrote {measure(name)}")
    except FiguresError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
