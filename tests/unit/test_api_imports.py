"""The API process never loads torch, transformers or peft (it runs on machines without GPUs)."""

import subprocess
import sys

HEAVY = {"torch", "transformers", "peft", "accelerate"}


def test_api_app_does_not_import_training_libraries():
    code = (
        "import sys; from api.app import create_app; create_app(); "
        f"loaded = sorted({{m.split('.')[0] for m in sys.modules}} & {HEAVY!r}); print(loaded)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={"TRAINDOCK_DATA_DIR": "/tmp/traindock-import-check", "PATH": ""})
    assert out.stdout.strip() == "[]"


def test_the_check_would_see_a_heavy_import():
    code = f"import sys, torch; print(sorted({{m.split('.')[0] for m in sys.modules}} & {HEAVY!r}))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "torch" in out.stdout
