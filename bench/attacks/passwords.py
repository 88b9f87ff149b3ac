"""Measurement 2 of the hostile-client benchmark: wrong researcher passwords from one address as fast as one
client can, then a patient attacker who waits as told until locked out, then the right password.
"""
from __future__ import annotations

import secrets
import time
from collections import Counter
from typing import Callable

from bench.attacks.clients import WAIT_RE, classify, raw_call
from bench.attacks.target import App
from bench.common import markdown_table, percentile

# measured from outside before the fix (issue 18)
BEFORE = "600 wrong passwords all answered, no delay, nothing logged"


def measure_passwords(app: App, password: str, guesses: int, patient_limit_s: float,
                      say: Callable[[str], None]) -> tuple[str, dict]:
    hammer_addr, patient_addr, fresh_addr = "198.18.200.1", "198.18.200.2", "198.18.200.3"
    counts: Counter = Counter()
    t0 = time.perf_counter()
    per_call = []
    for i in range(guesses):
        s = time.perf_counter()
        counts[classify(raw_call(app.url, "researcher_counts", [f"wrong-{i}-{secrets.token_hex(4)}"],
                                 hammer_addr))] += 1
        per_call.append(time.perf_counter() - s)
    hammer_s = time.perf_counter() - t0
    say(f"  hammer: {dict(counts)} in {hammer_s:.1f} s")

    # the patient attacker: every password is tried until the app answers it, waiting as long as it says
    patient: Counter = Counter()
    tested, locked_after_s, lock_wait = 0, float("nan"), 0
    t0 = time.perf_counter()
    for i in range(guesses):
        while True:
            answer = raw_call(app.url, "researcher_counts", [f"patient-{i}-{secrets.token_hex(4)}"], patient_addr)
            kind = classify(answer)
            patient[kind] += 1
            if kind == "wrong password":
                tested += 1
                break
            m = WAIT_RE.search(answer)
            wait = int(m.group(1)) if m else 1
            if wait > patient_limit_s:
                locked_after_s, lock_wait = time.perf_counter() - t0, wait
                break
            time.sleep(wait)
        if lock_wait:
            break
    patient_s = time.perf_counter() - t0
    say(f"  patient: {tested} tested, {dict(patient)} in {patient_s:.1f} s, then told to wait {lock_wait} s")

    right_locked = classify(raw_call(app.url, "researcher_counts", [password], patient_addr))
    right_fresh = classify(raw_call(app.url, "researcher_counts", [password], fresh_addr))
    lockouts = [ln.strip() for ln in app.log().splitlines() if "lockout:" in ln]
    rows = [["one client as fast as it can", hammer_addr, guesses, counts["wrong password"],
             counts["too many attempts"], sum(v for k, v in counts.items()
                                              if k not in ("wrong password", "too many attempts")),
             hammer_s, percentile(per_call, 50) * 1000],
            ["patient: waits as told, until locked out", patient_addr, sum(patient.values()), tested,
             patient["too many attempts"], sum(v for k, v in patient.items()
                                               if k not in ("wrong password", "too many attempts")),
             patient_s, float("nan")]]
    table = markdown_table(["attacker", "address", "requests", "\"Wrong password\" (tested)", "\"Too many attempts\"",
                            "other", "total s", "p50 ms/request"], rows, digits=1)
    logged = "\n".join(f"    {ln[-160:]}" for ln in lockouts) or "    (none)"
    met = bool(lockouts) or hammer_s >= 60
    text = "\n\n".join([
        f"**2. Researcher passwords.** Raw HTTP to `/gradio_api/call/researcher_counts`, one request at a time.",
        table,
        f"The patient attacker tested {tested} passwords in {patient_s:.0f} s and was then told to wait "
        f"{lock_wait:,} s (it stopped there: at most {tested} guesses per address and hour). "
        f"The right password afterwards: from the locked-out address `{right_locked}`, from a fresh address "
        f"`{right_fresh}`. Lockout lines in the app's log ({len(lockouts)}):\n\n{logged}",
    ])
    summary = {"target": ">= 60 s for 200, or a logged lockout", "before": BEFORE,
               "after": f"{guesses} fast: {counts['wrong password']} tested, {counts['too many attempts']} "
                        f"\"Too many attempts\" in {hammer_s:.1f} s"
                        f"{'' if any(hammer_addr in ln for ln in lockouts) else ', no lockout'}; "
                        f"patient: {tested} tested in {patient_s:.0f} s, "
                        f"then locked out {lock_wait:,} s; {len(lockouts)} lockout line(s) logged",
               "met": met}
    return text, summary
