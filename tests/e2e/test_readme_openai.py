"""The README's "Use it with the OpenAI client" example runs as written against `traindock up`."""

import re
import signal
import subprocess
import sys

import pytest

from tests.conftest import REPO
from tests.e2e.conftest import start_up
from tests.integration.openai_server import free_port

pytestmark = pytest.mark.e2e


def readme_example() -> str:
    section = REPO.joinpath("README.md").read_text().split("## Use it with the OpenAI client", 1)[1]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_the_readme_openai_example_runs(tmp_path):
    from worker.tinymodel import build_tiny_model

    data = tmp_path / ".traindock"
    build_tiny_model(data / "models" / "tiny-llama-demo")  # what `traindock demo` builds
    port = free_port()
    up = start_up(data, port, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        code = readme_example().replace("127.0.0.1:8000", f"127.0.0.1:{port}")
        run = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=up.env, capture_output=True, text=True,
                             timeout=600)
    finally:
        up.send_signal(signal.SIGTERM)
        up.wait(timeout=60)
    assert run.returncode == 0, run.stderr
    lines = run.stdout.splitlines()
    assert lines[0] == "succeeded ft:tiny-llama-demo:demo:ftjob-1"
    assert any(line.startswith("metrics step ") for line in lines[1:-1])  # (messages may span lines)
    assert lines[-1] == "['tiny-llama-demo', 'ft:tiny-llama-demo:demo:ftjob-1']"
