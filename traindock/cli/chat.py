"""`traindock generate` and `traindock chat`: a base model, a fine-tuned model or a checkpoint,
called through the API's /v1/completions and /v1/chat/completions, the answer printed as it
streams."""

import json
import sys
from collections.abc import Iterator
from typing import Annotated, Any, Optional

import httpx
import typer

from traindock.cli import sse
from traindock.cli.client import CliError, api

Model = Annotated[str, typer.Argument(help="A base model (as GET /v1/models lists it), a fine-tuned model "
                                     "(ft:...:ftjob-N) or a checkpoint (ft:...:ckpt-step-S).")]
Url = Annotated[Optional[str], typer.Option("--url", help="API base URL (default TRAINDOCK_API_URL).")]
MaxTokens = Annotated[int, typer.Option("--max-tokens", min=1, help="Most tokens in the answer.")]
Temperature = Annotated[float, typer.Option(min=0, max=2, help="0: greedy, the same answer every time.")]
TopP = Annotated[float, typer.Option("--top-p", min=0.01, max=1, help="Nucleus sampling (with a temperature above 0).")]
Seed = Annotated[Optional[int], typer.Option(help="Seed for sampling: the same seed, the same answer.")]
Stop = Annotated[Optional[list[str]], typer.Option("--stop", help="Stop before this text (repeatable, up to 4).")]


def stream_answer(client: httpx.Client, path: str, body: dict[str, Any]) -> Iterator[str]:
    """The answer's text pieces as the API streams them."""
    with client.stream("POST", path, json={**body, "stream": True},
                       timeout=httpx.Timeout(30, read=600)) as response:
        if response.is_error:
            response.read()
            raise CliError(f"error {response.status_code}: {_message(response)}")
        for event in sse.parse(_data_only(response.iter_lines())):
            if event.data.get("error"):
                raise CliError(f"the answer broke off: {event.data['error'].get('message')}")
            for choice in event.data.get("choices") or ():
                text = choice.get("text") if "text" in choice else (choice.get("delta") or {}).get("content")
                if text:
                    yield text


def _data_only(lines: Iterator[str]) -> Iterator[str]:
    """The stream ends with `data: [DONE]`, which is no JSON."""
    for line in lines:
        if line.strip() != "data: [DONE]":
            yield line


def _message(response: httpx.Response) -> str:
    try:
        error = response.json().get("error") or {}
    except ValueError:
        return response.text.strip() or response.reason_phrase
    param = f" ({error['param']})" if error.get("param") else ""
    return f"{error.get('message')}{param}"


def generate(model: Model, prompt: Annotated[str, typer.Option("--prompt", "-p", help="The prompt.")],
             max_tokens: MaxTokens = 256, temperature: Temperature = 0.0, top_p: TopP = 1.0, seed: Seed = None,
             stop: Stop = None, url: Url = None,
             json_: Annotated[bool, typer.Option("--json", help="Print the API's whole answer, for scripts.")] = False):
    """Complete one prompt, built as the model's job built its training examples; printed as it streams."""
    body = {"model": model, "prompt": prompt, "max_tokens": max_tokens, "temperature": temperature,
            "top_p": top_p, "seed": seed, "stop": stop or None}
    with api(url) as client:
        if json_:
            response = client.post("/v1/completions", json=body, timeout=httpx.Timeout(30, read=600))
            if response.is_error:
                raise CliError(f"error {response.status_code}: {_message(response)}")
            sys.stdout.write(json.dumps(response.json(), indent=2) + "\n")
            return
        for piece in stream_answer(client, "/v1/completions", body):
            sys.stdout.write(piece)
            sys.stdout.flush()
    sys.stdout.write("\n")


def chat(model: Model, system: Annotated[Optional[str], typer.Option(help="A system message first.")] = None,
         max_tokens: MaxTokens = 256, temperature: Temperature = 0.7, top_p: TopP = 1.0, seed: Seed = None,
         url: Url = None):
    """Chat with a model: type a message, read the answer as it streams; an empty line or Ctrl-D ends."""
    messages: list[dict[str, str]] = [{"role": "system", "content": system}] if system else []
    print(f"chatting with {model}; an empty line or Ctrl-D ends", file=sys.stderr)
    with api(url) as client:
        while True:
            try:
                line = input("you> ")
            except EOFError:
                print(file=sys.stderr)
                return
            if not line.strip():
                return
            messages.append({"role": "user", "content": line})
            body = {"model": model, "messages": messages, "max_tokens": max_tokens, "temperature": temperature,
                    "top_p": top_p, "seed": seed}
            answer = []
            sys.stdout.write("model> ")
            for piece in stream_answer(client, "/v1/chat/completions", body):
                answer.append(piece)
                sys.stdout.write(piece)
                sys.stdout.flush()
            sys.stdout.write("\n")
            messages.append({"role": "assistant", "content": "".join(answer)})


def register(app: typer.Typer) -> None:
    app.command("generate")(generate)
    app.command("chat")(chat)
