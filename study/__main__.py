"""``python -m study COMMAND``: the study's researcher commands.

    export    write the analysts' export (long table as CSV and Parquet, sessions, feedback)
    analyze   analyse a database, export or interchange CSV (same as ``python study/analyze.py``)
    simulate  write a simulated study database, or estimate power (``--power``)
"""
from __future__ import annotations

import sys
from typing import Callable, Sequence


def _command(name: str) -> Callable[[Sequence[str]], int]:
    # imported on demand: `analyze` must stay importable without the app's dependencies
    if name == "export":
        from study.export import main
    elif name in ("analyze", "analyse"):
        from study.analyze import main
    else:
        from study.simulate import main
    return main


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help") or args[0] not in ("export", "analyze", "analyse", "simulate"):
        print(__doc__.strip())
        return 0 if args and args[0] in ("-h", "--help") else 2
    return _command(args[0])(args[1:])


if __name__ == "__main__":
    raise SystemExit(main())
