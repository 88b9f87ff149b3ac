"""The repository names no place outside itself, so a fresh clone anywhere runs exactly as it does here.

A path into the developer's machine (their checkout, home or scratch folders) or a relative path climbing out
of the repository works on that machine only: on a clone, a Space or a reviewer's laptop it is missing, or
worse, it is something else. This reads every file git knows (tracked, or new and not ignored), skipping
binary ones, and fails on:

- absolute paths under a developer's machine (``/work/``, ``/home/``, ``/root/``, ``/Users/``, ``/mnt/``,
  ``/tmp/``, this checkout's own folder and this user's home);
- absolute paths the code builds (``Path("/...")``) or a data file holds (a study file, a model's JSON);
- relative paths that climb above the repository's root from the file they are written in (``../shared``
  anywhere, ``../../`` from a folder one level down).

Legitimate cases are allowed one by one below, each with the reason; the patterns themselves stay strict.
"""
from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent

BINARY_SUFFIXES = {".png", ".jpg", ".jpeg", ".gif", ".webp", ".ico", ".safetensors", ".pt", ".pth", ".bin",
                   ".npy", ".npz", ".faiss", ".parquet", ".sqlite", ".db", ".zip", ".gz", ".whl", ".pdf"}
DATA_SUFFIXES = {".toml", ".json", ".tsv", ".csv", ".txt", ".yaml", ".yml", ".cfg", ".ini"}

# Absolute paths into a developer's machine. The look-behind keeps "https://host/tmp/x" and "a/tmp/b" out.
MACHINE_ROOTS = ("/work/", "/home/", "/root/", "/Users/", "/mnt/", "/tmp/")
END = r"[^\s\"'`)\]},;<>]*"
# An absolute path the code turns into a Path, and an absolute path held by a data file (optionally behind a
# ``config:``/``local:`` scheme; "https://" is not one, it has two slashes).
PATH_CALL = re.compile(r"Path\(\s*f?[\"'](/[^\"']*)[\"']")
DATA_VALUE = re.compile(r"[\"'](?:[a-z][a-z-]*:)?(/(?!/)[^\"'\s]*)[\"']")
CLIMB = re.compile(r"(?<![\w.])((?:\.\./)+)")

# (path prefix, file or None for any file) -> why this absolute path is fine.
ALLOWED_ABSOLUTE: dict[tuple[str, str | None], str] = {
    ("/data", None): "a Hugging Face Space's persistent storage mount (dressup.config, dressup.doctor, README)",
    ("/tmp/dressup-bench/", None): "scratch folders the benchmarks create themselves and write into",
    ("/tmp/page-shots", "tests/test_page_browser.py"): "where the browser test writes its screenshots",
    ("/usr/bin/chromium", "tests/test_app_browser.py"): "the system Chromium the browser tests drive (skipped "
                                                        "when it is absent)",
    ("/nowhere/", "tests/test_queries.py"): "a made-up image path: the item is scored, never opened",
    ("/x", "tests/test_queries.py"): "a made-up image path: the item is scored, never opened",
    ("/proc/", None): "the kernel's process information (CPU load, memory), read where it exists",
}
# file -> why relative climbs out of the repository are fine there (``../shared`` is never fine).
ALLOWED_CLIMBS: dict[str, str] = {
    "tests/test_reliability_access.py": "path-traversal URLs sent to the app to prove it refuses them; "
                                        "nothing is read from them",
}


SELF = Path(__file__).resolve().relative_to(REPO).as_posix()  # spells the patterns out, so it is not read


def _repo_files() -> list[str]:
    try:
        out = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"], cwd=REPO,
                             capture_output=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("not a git checkout: no file list to read")
    return sorted({name for name in out.decode().split("\0") if name and name != SELF})


def _text(rel: str) -> str | None:
    path = REPO / rel
    if path.suffix.lower() in BINARY_SUFFIXES or not path.is_file():  # a file deleted but not yet unstaged
        return None
    data = path.read_bytes()
    if b"\0" in data[:8192]:
        return None
    return data.decode("utf-8", errors="replace")


def _machine_pattern() -> re.Pattern:
    roots = list(MACHINE_ROOTS) + [str(REPO) + "/"]
    home = str(Path.home())
    if len(Path(home).parts) > 1:
        roots.append(home.rstrip("/") + "/")
    alternatives = "|".join(re.escape(r) for r in sorted(set(roots), key=len, reverse=True))
    return re.compile(rf"(?<![\w.~$/-])((?:{alternatives}){END})")


def _allowed(path: str, rel: str) -> bool:
    """Whether ``path`` is an allowed place itself or lies under one (``/data/x`` yes, ``/database`` no)."""
    return any((path == prefix.rstrip("/") or path.startswith(prefix.rstrip("/") + "/"))
               and (where is None or where == rel) for (prefix, where) in ALLOWED_ABSOLUTE)


def _absolute_paths(rel: str, text: str, machine: re.Pattern) -> list[str]:
    found = [m.group(1) for m in machine.finditer(text)]
    if rel.endswith(".py"):
        found += PATH_CALL.findall(text)
    if Path(rel).suffix.lower() in DATA_SUFFIXES and not rel.endswith("package-lock.json"):
        found += DATA_VALUE.findall(text)
    return sorted({p for p in found if not _allowed(p, rel)})


def _climbs(rel: str, text: str) -> list[str]:
    """Relative paths in ``rel`` that leave the repository, read from the folder ``rel`` is in."""
    depth = len(Path(rel).parent.parts)
    out = []
    for m in CLIMB.finditer(text):
        target = re.match(END, text[m.start():]).group(0)
        if target.startswith("../shared") or (rel not in ALLOWED_CLIMBS and m.group(1).count("../") > depth):
            out.append(target)
    return sorted(set(out))


def test_no_file_names_a_place_outside_the_repository():
    machine = _machine_pattern()
    problems = []
    for rel in _repo_files():
        text = _text(rel)
        if text is None:
            continue
        problems += [f"{rel}: absolute path {p}" for p in _absolute_paths(rel, text, machine)]
        problems += [f"{rel}: climbs out of the repository: {p}" for p in _climbs(rel, text)]
    assert not problems, ("files name places outside the repository (make them relative to the repository or "
                          "the study file, or allow them in this test with the reason):\n  " + "\n  ".join(problems))


def test_the_checks_catch_what_they_are_for():
    """The patterns themselves: a developer's checkout, a model file behind a scheme, a climb to ../shared."""
    machine = _machine_pattern()
    json_text = '{"base_spec": "config:/work/main/assets/models/x.json", "url": "https://example.org/a"}'
    assert _absolute_paths("assets/weights/demo/x.json", json_text, machine) == ["/work/main/assets/models/x.json"]
    assert _absolute_paths("dressup/x.py", 'P = Path("/srv/models")\nSPACE = Path("/data")', machine) == ["/srv/models"]
    assert _absolute_paths("tests/x.py", 'u = "https://h/home/x"; v = "a/tmp/b"', machine) == []
    assert _absolute_paths("dressup/x.py", 'D = Path("/database")', machine) == ["/database"]
    assert _climbs("README.md", "see ../shared/DESIGN.md") == ["../shared/DESIGN.md"]
    assert _climbs("assets/demo.toml", 'cache_dir = "../cache/demo"') == []  # assets/.. is the repository
    assert _climbs("assets/demo.toml", 'cache_dir = "../../elsewhere"') == ["../../elsewhere"]
    assert _climbs("tests/test_reliability_access.py", "x ../shared/y") == ["../shared/y"]
