"""Hostile client: the study app's memory under the largest photos, and what guessing and flooding clients get.

    python -m bench hostile                  # all four measurements (about 6-8 minutes on 2 busy cores)
    python -m bench hostile --memory         # peak RSS while participants submit the largest allowed photos
    python -m bench hostile --passwords      # 200 wrong researcher passwords from one address
    python -m bench hostile --withdraw       # a participant's answer latency under a completion-code flood
    python -m bench hostile --queue          # participants' Submits under a flood of failing Submits

The app is a real ``python app.py`` on this benchmark's own tiny study, built once under
/tmp/dressup-bench/hostile/study the way the tests' tiny study is (a 200-item drawn catalogue, three retrieval
arms over untrained ``config:`` encoders, a conditional DCGAN trained for 4 steps; about a minute), each run
writing its answers to a temporary results folder. The study file's ``[ui] max_upload_mb`` is 10 (the app's
default; the tests' tiny study says 2) so that a 12-megapixel photo fits; ``max_megapixels`` is the default 12.

The app is started with ``DRESSUP_BEHIND_PROXY=1``, so it takes the client address from ``X-Forwarded-For`` as
it would from a reverse proxy: this one process then plays many participants and attackers, each with its own
address from 198.18.0.0/15 (RFC 2544's benchmarking range). The addresses are only written in that header;
every connection goes to 127.0.0.1.

- ``--memory``: a fresh app per kind of photo; N participants (default 15) at once, each with its own
  gradio_client ``Client``, consent and Submit 4 photos each: JPEGs of 4000x2990 (11.96 megapixels, noisy
  content, ~5 MB), then PNGs of the same size (smooth content, ~9 MB), then the attack measured before the
  fix (36-megapixel PNGs, 30 participants x 4 = 120 uploads), which must now be refused from the headers.
  Every upload is a different file (a comment or text chunk differs), since Gradio names uploads by content.
  Peak RSS is the app's ``VmHWM``; its ``VmRSS`` is sampled every 0.2 s.
- ``--passwords``: raw HTTP to ``/gradio_api/call/researcher_counts`` (POST, then the event stream) as fast
  as one client can from one address (200 requests), then a patient attacker from another address who
  retries each refused password after the wait the app names, until it is locked out; the app's log is
  searched for ``lockout:``; then the right password from a locked and from a fresh address.
- ``--withdraw``: an attacker process (niceness 10: it stands for another machine) runs 4 threads of one
  attacker address that send ``DU-`` + 8 random hex digits to
  ``/gradio_api/call/withdraw`` as fast as they can for 20 s, while a participant (consented, grids shown)
  keeps rating grid A through gradio_client (``/rate_A``); the same calls before and after the flood are the
  comparison.
- ``--queue``: 10 participants consent and Submit (2 real photos each), first alone, then while 4 attacker
  connections (one address, one consented session shared through its resume link) loop failing Submits for
  30 s: a real photo with a 36-megapixel PNG, and no photo at all.
"""
from __future__ import annotations

from __future__ import annotations

import argparse
import secrets
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.attacks.floods import measure_queue, measure_withdraw  # noqa: E402
from bench.attacks.memory import measure_memory  # noqa: E402
from bench.attacks.passwords import measure_passwords  # noqa: E402
from bench.attacks.target import WORK, launch, tiny_study  # noqa: E402
from bench.common import Run, emit, markdown_table  # noqa: E402


# ---------------------------------------------------------------------------------------------- main
def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--memory", action="store_true", help="only the memory measurement")
    parser.add_argument("--passwords", action="store_true", help="only the researcher-password measurement")
    parser.add_argument("--withdraw", action="store_true", help="only the withdrawal-code flood")
    parser.add_argument("--queue", action="store_true", help="only the queue flood")
    parser.add_argument("--participants", type=int, default=15, help="memory: participants per kind (default 15)")
    parser.add_argument("--photos", type=int, default=4, help="memory: photos per participant, 2-4 (default 4)")
    parser.add_argument("--guesses", type=int, default=200, help="passwords: requests (default 200)")
    parser.add_argument("--flood-seconds", type=float, default=20, help="withdraw: flood length (default 20)")
    parser.add_argument("--queue-seconds", type=float, default=30, help="queue: flood length (default 30)")
    parser.add_argument("--no-save", action="store_true", help="print only; do not write bench/RESULTS.md")
    args = parser.parse_args()
    chosen = [k for k in ("memory", "passwords", "withdraw", "queue") if getattr(args, k)] or \
        ["memory", "passwords", "withdraw", "queue"]
    run = Run.start("hostile")
    say = lambda s: print(s, flush=True)  # noqa: E731
    WORK.mkdir(parents=True, exist_ok=True)
    t_build = time.perf_counter()
    tiny_study(say)
    build_s = time.perf_counter() - t_build

    parts: list[str] = []
    summary: dict[str, dict] = {}
    if "memory" in chosen:
        say("memory ...")
        text, summary["1. memory"] = measure_memory(args.participants, args.photos, say)
        parts.append(text)
    shared = [k for k in ("passwords", "withdraw", "queue") if k in chosen]
    start_s = float("nan")
    if shared:
        password = secrets.token_urlsafe(16)
        app, start_s = launch("shared", password)
        try:
            if "passwords" in chosen:
                say("passwords ...")
                text, summary["2. researcher passwords"] = measure_passwords(app, password, args.guesses, 120, say)
                parts.append(text)
            if "withdraw" in chosen:
                say("withdrawal-code flood ...")
                text, summary["3. withdrawal-code flood"] = measure_withdraw(app, args.flood_seconds, 4, say)
                parts.append(text)
            if "queue" in chosen:
                say("queue flood ...")
                text, summary["4. queue flood"] = measure_queue(app, args.queue_seconds, 10, say)
                parts.append(text)
            alive = app.proc.proc.poll() is None
        finally:
            app.stop()
        parts.append(f"The app that served 2-4 (one process, started in {start_s:.0f} s) was alive at the end: "
                     f"{alive}.")

    rows = [[name, s["target"], s["before"], s["after"], "yes" if s["met"] else "**no**"]
            for name, s in summary.items()]
    head = (
        "A hostile client against the study app (issue 18). The app: `python app.py` on this benchmark's tiny study "
        "(a 200-item drawn catalogue, three retrieval arms over untrained `config:` encoders, a DCGAN trained "
        "4 steps; built like the tests' tiny study, reused from /tmp/dressup-bench/hostile"
        f"{f', built in {build_s:.0f} s' if build_s > 5 else ''}), `[ui] max_upload_mb` raised from the tiny "
        "study's 2 to 10 (the app's default) so a 12-megapixel photo fits, `max_megapixels` the default 12. "
        "Started with `DRESSUP_BEHIND_PROXY=1`: each participant and attacker sends its own address from "
        "198.18.0.0/15 in `X-Forwarded-For` (every connection is to 127.0.0.1). \"Before\" is what was measured "
        "from outside before the fix; \"after\" is this run.")
    table = markdown_table(["measure", "target", "before", "after", "met"], rows)
    body = "\n\n".join([head, table, *parts])
    emit(run, body, save=not args.no_save)
    return 0 if all(s["met"] for s in summary.values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
