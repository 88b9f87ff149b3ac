"""``python -m dressup ...``: everything a researcher does from the command line."""
from dressup.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
