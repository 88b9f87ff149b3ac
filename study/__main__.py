"""``python -m study COMMAND``: the study's researcher commands.

    export    write the analysts' export (long table as CSV and Parquet, sessions, feedback)
    analyze   analyse a database, export or interchange CSV (same as ``python study/analyze.py``)
    simulate  write a simulated study database, or estimate power (``--power``)

Each command has its own options (``python -m study export --help``); this module only picks the command, so
an unknown one is named and the commands are listed.
"""
from __future__ import annotations

import argparse
import sys
from typing import Callable, Sequence

from dressup import __version__

COMMANDS = {
    "export": "write the analysts' export (long table as CSV and Parquet, sessions, feedback)",
    "analyze": "analyse a database, export or interchange CSV (same as `python study/analyze.py`)",
    "simulate": "write a simulated study database, or estimate power (--power)",
}
ALIASES = {"analyze": ["analyse"]}


def _command(name: str) -> Callable[[Sequence[str]], int]:
    # imported on demand: `analyze` must stay importable without the app's dependencies
    if name == "export":
        from study.export import main
    elif name in ("analyze", "analyse"):
        from study.analyze import main
    else:
        from study.simulate import main
    return main


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m study", description="The study's researcher commands.",
                                epilog="`python -m study COMMAND --help` lists a command's options")
    p.add_argument("--version", action="version", version=f"dressup {__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, helptext in COMMANDS.items():
        # add_help=False: --help after the command reaches the command's own parser
        sub.add_parser(name, help=helptext, aliases=ALIASES.get(name, []), add_help=False)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        parsed, rest = build_parser().parse_known_args(args)
    except SystemExit as e:  # argparse's own exit (help, version, an unknown command): its status, not a raise
        return int(e.code or 0)
    return _command(parsed.command)(rest)


if __name__ == "__main__":
    raise SystemExit(main())
