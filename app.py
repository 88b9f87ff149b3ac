"""The study app: wires one study file to the participant page and serves it (Hugging Face Spaces runs this).

    python app.py [--study FILE] [--host H] [--port P]

The study file comes from --study, else $DRESSUP_STUDY, else assets/demo.toml. Every arm is loaded before
the page is served, so a model that cannot load stops the start with a message naming the arm and the fix
instead of failing in front of a participant; likewise a results folder that cannot take answers (read-only,
full) stops the start instead of losing answers later.
"""
from __future__ import annotations

import argparse
import logging
import signal
import sys

from dressup.config import StudyFileError, load_study
from dressup.device import DeviceError, gpu_policy
from study.hosting import HostingError, check_hosting, use_persistent_model_cache
from study.session import ResultsFolderError, Sessions, check_results_folder


def _stop_serving(_signum: int, _frame: object) -> None:
    raise KeyboardInterrupt  # Gradio's serving loop closes the server on it; main's finally then runs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--study", help="study file (default: $DRESSUP_STUDY or assets/demo.toml)")
    parser.add_argument("--host", help="address to listen on (default: $GRADIO_SERVER_NAME or 127.0.0.1)")
    parser.add_argument("--port", type=int, help="port (default: $GRADIO_SERVER_PORT or 7860)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    use_persistent_model_cache()  # before any model library reads HF_HOME
    try:
        study = load_study(args.study)
        hosting_warning = check_hosting(study)
        check_results_folder(study)
        cpu_warning = gpu_policy(study.profile, study.device, study.allow_cpu, study.path)
    except (StudyFileError, ResultsFolderError, DeviceError, HostingError) as e:
        print(f"dressup: cannot start the study: {e}", file=sys.stderr)
        return 2
    # torch, the models and Gradio load only now, so a bad study file or results folder is reported at once
    from dressup.arms import ArmLoadError, build_arms
    from dressup.demo import ensure_study_models
    from study.database import DatabaseUnavailable, masked
    from study.push import PushError, start_push
    from study.ui import build_ui, launch

    try:
        ensure_study_models(study, progress=True)  # the demo's models, trained or unpacked at its first start
        arms = build_arms(study, progress=True)
        sessions = Sessions(study, arms)
        push = start_push(study.push, sessions.store)  # completed participants to a private dataset, if [push]
    except (ArmLoadError, DatabaseUnavailable, PushError) as e:
        print(f"dressup: cannot start the study: {e}", file=sys.stderr)
        return 2
    where = study.results_dir if sessions.store.path else masked(sessions.store.url)
    print(f"study {study.name!r}: {len(arms)} arms ready; answers in {where}", flush=True)
    for warning in (cpu_warning, hosting_warning):
        if warning:
            print(f"WARNING: {warning}", file=sys.stderr, flush=True)
    signal.signal(signal.SIGTERM, _stop_serving)  # a Space stopping sends SIGTERM: end as Ctrl-C would
    try:
        launch(build_ui(sessions), sessions, host=args.host, port=args.port)
    finally:
        if push is not None:
            push.stop()  # the answers given since the last push leave with the app
    return 0


if __name__ == "__main__":
    sys.exit(main())
