"""``python -m bench`` lists the benchmarks; ``python -m bench NAME [ARGS]`` runs ``bench/NAME.py`` with ARGS.

A benchmark is any ``bench/*.py`` file other than this package's own modules (its helpers live in the
subpackages ``bench/common/`` and ``bench/attacks/``, and in ``hosts.py``); its module docstring's first line is
its description, and it is run as ``__main__`` so each script also works as ``python bench/NAME.py``.
"""
from __future__ import annotations

import ast
import runpy
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
NOT_BENCHMARKS = {"__init__", "__main__", "hosts"}


def benchmarks() -> dict[str, str]:
    """Benchmark name -> first line of its docstring, read without importing it (imports are heavy)."""
    found = {}
    for path in sorted(HERE.glob("*.py")):
        if path.stem in NOT_BENCHMARKS:
            continue
        doc = ast.get_docstring(ast.parse(path.read_text(encoding="utf-8"))) or ""
        found[path.stem] = doc.strip().splitlines()[0] if doc.strip() else ""
    return found


def main(argv: list[str]) -> int:
    found = benchmarks()
    if not argv or argv[0] in ("-h", "--help"):
        print("usage: python -m bench NAME [ARGS]   (python -m bench NAME --help for a benchmark's options)\n")
        width = max(map(len, found), default=0)
        for name, line in found.items():
            print(f"  {name:<{width}}  {line}")
        print(f"\nresults: {HERE / 'RESULTS.md'}")
        return 0
    name = argv[0].removesuffix(".py")
    if name not in found:
        print(f"no benchmark {name!r}; choose one of {sorted(found)} (python -m bench lists them)", file=sys.stderr)
        return 2
    root = str(HERE.parent)
    if root not in sys.path:
        sys.path.insert(0, root)
    sys.argv = [f"bench/{name}.py", *argv[1:]]
    try:
        runpy.run_path(str(HERE / f"{name}.py"), run_name="__main__")
    except SystemExit as e:  # scripts end with raise SystemExit(main())
        return e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
