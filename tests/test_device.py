"""The paper profile's GPU policy: no CUDA means no start, unless the study file allows the CPU explicitly."""
from __future__ import annotations

import subprocess
import sys

import pytest

from dressup.config import StudyFileError, load_study
from dressup.device import DeviceError, cuda_available, gpu_policy
from tests.app_fixtures import REPO, shared_app, tiny_study

pytestmark = pytest.mark.skipif(cuda_available(), reason="checks what happens on a machine without CUDA")


def test_paper_profile_without_cuda_is_refused_with_both_fixes():
    with pytest.raises(DeviceError) as e:
        gpu_policy("paper", "auto", False, "study.toml")
    assert "allow_cpu = true" in str(e.value) and "Space" in str(e.value)
    assert "allow_cpu" in gpu_policy("paper", "cpu", True, "study.toml")  # allowed: a warning to show
    assert gpu_policy("demo", "auto", False, "study.toml") is None


def test_a_device_typo_is_refused(tmp_path):
    p = tmp_path / "s.toml"
    p.write_text('[study]\nname="x"\nprofile="paper"\ndevice="gpu"\n[catalogue]\nroot="c"\n'
                 '[arms.a]\nkind="generative"\ngenerator={kind="sd15"}\n')
    with pytest.raises(StudyFileError, match="device"):
        load_study(p)
    p.write_text(p.read_text().replace('device="gpu"', 'allow_cpu="yes"'))
    with pytest.raises(StudyFileError, match="allow_cpu"):
        load_study(p)


def test_app_stops_without_the_switch_and_warns_with_it(tmp_path):
    study = tiny_study().path
    assert load_study(study).allow_cpu  # the tests' paper-profile study runs on the CPU by saying so
    refused = tmp_path / "no-switch.toml"
    refused.write_text(study.read_text().replace("allow_cpu = true\n", "")
                       .replace('root = "catalogue"', f'root = "{study.parent / "catalogue"}"'))
    r = subprocess.run([sys.executable, str(REPO / "app.py"), "--study", str(refused), "--port", "1"],
                       capture_output=True, text=True, timeout=120, cwd=REPO)
    assert r.returncode == 2
    assert "needs a CUDA GPU" in r.stderr and "allow_cpu = true" in r.stderr and "hardware" in r.stderr
    # with the switch (the shared test app's study has it), the app starts and says so where it logs
    assert "WARNING: no CUDA GPU" in shared_app().log()
