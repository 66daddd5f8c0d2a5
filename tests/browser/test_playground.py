"""The playground in headless Chromium: the API and a real inference server (`traindock serve`,
no training worker), the tiny base model in two columns: a prompt sent at temperature 0 streams
the same greedy text into both (the text the API answers unstreamed), a chat accumulates and
clears, and a refused request (max tokens over the server's limit) shows OpenAI's error message
in each column. Screenshots: tests/artifacts/8-playground.png, 9-playground-refused.png."""

import pytest

from tests.browser.conftest import screenshot, sign_in
from tests.e2e.conftest import start_inference_server, stop_process

MAX_TOKENS = 32
PROMPT = "What should I cook tonight?"


@pytest.fixture(autouse=True)
def low_token_limit(monkeypatch):
    """Set before the dashboard fixture reads the settings."""
    monkeypatch.setenv("TRAINDOCK_INFERENCE_MAX_TOKENS", str(MAX_TOKENS))


@pytest.fixture
def inference_server(dashboard, tmp_path):
    server = start_inference_server(tmp_path / "serve.log")
    yield server
    stop_process(server)


def answers(page) -> list[str]:
    """Each column's streamed answers, as text (the tiny random model may answer only newlines)."""
    return page.locator(".pg-column .msg.assistant").evaluate_all("(nodes) => nodes.map((n) => n.textContent)")


def wait_until_answered(page) -> None:
    page.wait_for_function("() => [...document.querySelectorAll('.pg-column')]"
                           ".every((c) => c.dataset.state === 'done' || c.dataset.state === 'error')", timeout=90_000)


def send(page, text: str) -> None:
    page.fill("#pg-input", text)
    page.click("#pg-send")
    wait_until_answered(page)


def test_playground_streams_two_models_side_by_side_and_shows_refusals(dashboard, inference_server, page):
    sign_in(page, dashboard)
    page.click("#nav >> text=Playground")
    page.wait_for_selector("#pg-model-1")
    assert page.locator("#nav a.current").inner_text() == "Playground"
    for column in (0, 1):
        page.select_option(f"#pg-model-{column}", "tiny")
    assert "models=tiny,tiny" in page.url
    page.fill("#pg-temperature", "0")
    page.fill("#pg-max-tokens", "16")

    # A single prompt: greedy, so the same visible text in both columns, as the API answers unstreamed.
    page.select_option("#pg-mode", "prompt")
    send(page, "Hello")
    first, second = answers(page)
    assert first.strip() and first == second, (first, second)
    with dashboard.client() as api:
        whole = api.post("/v1/completions", json={"model": "tiny", "prompt": "Hello", "max_tokens": 16,
                                                   "temperature": 0})
    assert whole.status_code == 200, whole.text
    assert whole.json()["choices"][0]["text"] == first
    screenshot(page, "8-playground")

    # A chat accumulates: the second turn goes with the first; Clear empties both columns.
    page.select_option("#pg-mode", "chat")
    send(page, PROMPT)
    first, second = answers(page)
    assert first and first == second, (first, second)
    with dashboard.client() as api:
        whole = api.post("/v1/chat/completions", json={
            "model": "tiny", "messages": [{"role": "user", "content": PROMPT}], "max_tokens": 16, "temperature": 0})
    assert whole.json()["choices"][0]["message"]["content"] == first
    page.fill("#pg-input", "And tomorrow?")
    page.press("#pg-input", "Control+Enter")
    page.wait_for_selector(".pg-column[data-column='1'] .msg.user >> nth=1")
    wait_until_answered(page)
    assert page.locator(".pg-column .msg.user").count() == 4 and len(answers(page)) == 4
    page.click("#pg-clear")
    assert page.locator(".pg-column .msg").count() == 0

    # A refusal: the error envelope's message in each column, not an exception.
    page.expected_errors.append("status of 400")  # the browser reports the refused request's answer
    page.fill("#pg-max-tokens", str(MAX_TOKENS + 1))
    send(page, PROMPT)
    errors = page.locator(".pg-column .error").all_inner_texts()
    assert len(errors) == 2 and all(f"at most {MAX_TOKENS}" in e and "max_tokens" in e for e in errors), errors
    assert page.locator(".pg-column .msg.user.failed").count() == 2
    screenshot(page, "9-playground-refused")

    # The columns' models come from the address.
    page.goto(f"{dashboard.url}/ui/#/playground?models=tiny,tiny,tiny")
    page.wait_for_selector("#pg-model-2")
    assert page.locator("#pg-columns").input_value() == "3"
    assert [page.locator(f"#pg-model-{i}").input_value() for i in range(3)] == ["tiny"] * 3

    # A fine-tuned model lists its checkpoints under it (the answers stubbed: no training here).
    tuned, checkpoint = "ft:tiny:demo:ftjob-abc", "ft:tiny:demo:ftjob-abc:ckpt-step-10"
    page.route("**/v1/models", lambda route: route.fulfill(json={"object": "list", "has_more": False, "data": [
        {"id": "tiny", "object": "model", "created": 0, "owned_by": "traindock"},
        {"id": tuned, "object": "model", "created": 0, "owned_by": "tenant-1"}]}))
    page.route("**/v1/fine_tuning/jobs/ftjob-abc/checkpoints*", lambda route: route.fulfill(json={
        "object": "list", "has_more": False,
        "data": [{"id": "ftckpt-1", "fine_tuned_model_checkpoint": checkpoint, "step_number": 10}]}))
    page.goto(f"{dashboard.url}/ui/#/playground?models={checkpoint},tiny")
    page.wait_for_selector("#pg-model-1")
    assert page.locator("#pg-model-0").input_value() == checkpoint
    group = page.locator(f'#pg-model-0 optgroup[label="{tuned}"] option')
    assert group.all_inner_texts() == [f"{tuned} (final)", "checkpoint step 10"]
