"""Shared test settings: nothing may reach the network, and the machine has 2 cores."""
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

DEMO_STUDY = Path(__file__).resolve().parent.parent / "assets" / "demo.toml"


@pytest.fixture(scope="session")
def demo_study():
    """The demo profile's study, built once into cache/demo (the same cache `python app.py` uses)."""
    from dressup.config import load_study
    from dressup.demo import ensure_demo_build

    study = load_study(DEMO_STUDY)
    ensure_demo_build(study, progress=False)
    return study


@pytest.fixture(scope="session")
def demo_arms(demo_study):
    """The demo study's arms, loaded once for the whole session (``build_arms`` trains nothing: ``demo_study``
    has built the models)."""
    from dressup.arms import build_arms

    return build_arms(demo_study, progress=False)


@pytest.fixture(scope="module", params=["tiny", "twin"])
def served(request):
    """The study an app-level test runs on, served by the real app: "tiny" (the demo-like study of
    tests/app_fixtures.py) or "twin" (the paper profile's twin, tests/paper_twin.py); see paper_twin.Served."""
    from tests.paper_twin import served as study_kind

    return study_kind(request.param)
