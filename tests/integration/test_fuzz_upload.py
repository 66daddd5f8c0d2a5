"""Hypothesis fuzzing of POST /datasets: random bytes, random JSON values per line, malformed JSON,
valid rows mixed with bad ones and with rows of other formats, blank lines, odd unicode, long lines
and files over the limits (small limits here, so they are reached).

Whatever comes in: never a 5xx. A 201 stores the upload byte for byte, with the right row count
and format; a 4xx leaves nothing behind (no dataset row, no file, no `.part`)."""

import hashlib
import json
import os

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from api.app import create_app
from tests.integration.conftest import authorized, issue

MAX_UPLOAD_BYTES = 24000
MAX_LINE_BYTES = 6000
MAX_ROWS = 40
EXAMPLES = int(os.environ.get("TRAINDOCK_FUZZ_UPLOAD_EXAMPLES", "500"))

# Text with what tends to break things: NUL, control and format characters, combining marks,
# right-to-left text, astral-plane characters, quotes and backslashes.
odd_text = st.lists(
    st.one_of(
        st.characters(codec="utf-8"),
        st.sampled_from(["\x00", "\u2028", "\u2029", "\ufeff", "\u200b", "\u202e", "e\u0301", "😀", "𝔘",
                         "\\", '"', "\n", "\r", "\t", "\x7f", "\ud7ff", "\uffff", "\U0010ffff", "ß" * 50]),
    ),
    max_size=30,
).map("".join)
nonblank_text = odd_text.filter(lambda text: text.strip())

alpaca_rows = st.fixed_dictionaries(
    {"instruction": nonblank_text, "output": odd_text},
    optional={"input": st.one_of(st.none(), odd_text), "extra": st.integers()},
)
chat_rows = st.fixed_dictionaries({
    "messages": st.lists(
        st.fixed_dictionaries({"role": st.sampled_from(["system", "user", "assistant"]), "content": odd_text}),
        max_size=3,
    ).map(lambda messages: messages + [{"role": "assistant", "content": "ok"}]),
})
text_rows = st.fixed_dictionaries({"text": nonblank_text})
VALID_ROWS = {"alpaca": alpaca_rows, "chat": chat_rows, "text": text_rows}

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | odd_text,
    lambda children: st.lists(children, max_size=3) | st.dictionaries(
        st.sampled_from(["text", "instruction", "output", "input", "messages", "role", "content", "x"]) | odd_text,
        children, max_size=4,
    ),
    max_leaves=8,
)


@st.composite
def lines(draw):
    """One line (without its newline) and what it is: a valid row of a format, 'blank', 'bad'
    (cannot be a row: not JSON, not UTF-8, not an object, nested or numbered absurdly) or
    'unknown' (some JSON object, maybe a row)."""
    kind = draw(st.sampled_from(["alpaca", "chat", "text", "alpaca", "chat", "text", "blank", "value",
                                 "garbage", "not-utf8", "deep", "long-int", "long"]))
    if kind in VALID_ROWS:
        row = draw(VALID_ROWS[kind])
        escaped = draw(st.booleans())  # \uXXXX escapes or raw UTF-8
        line = json.dumps(row, ensure_ascii=escaped).encode()
        return line, kind
    if kind == "blank":
        return draw(st.sampled_from([b"", b" ", b"\t", b"\r", b"  \t "])), "blank"
    if kind == "value":
        value = draw(json_values)
        line = json.dumps(value, ensure_ascii=draw(st.booleans())).encode()
        return line, "unknown" if isinstance(value, dict) else "bad"
    if kind == "garbage":
        garbage = draw(st.binary(min_size=1, max_size=60).filter(lambda b: b"\n" not in b and b.strip()))
        try:
            json.loads(garbage)
        except (ValueError, RecursionError):
            return garbage, "bad"
        return garbage, "unknown"
    if kind == "not-utf8":
        return b'{"text": "' + draw(st.sampled_from([b"\xff", b"\xc3\x28", b"\xed\xa0\x80", b"\xf8\x88"])) + b'"}', "bad"
    if kind == "deep":
        depth = draw(st.integers(min_value=1100, max_value=MAX_LINE_BYTES // 2))  # past the recursion limit
        return b"[" * depth + b"]" * depth, "bad"
    if kind == "long-int":
        return b'{"text": "x", "n": ' + b"7" * draw(st.integers(4301, MAX_LINE_BYTES - 30)) + b"}", "bad"
    # A valid row longer than a line may be.
    return json.dumps({"text": "y" * draw(st.integers(MAX_LINE_BYTES, MAX_LINE_BYTES + 50))}).encode(), "long"


@st.composite
def uploads(draw):
    """(file bytes, expected): expected is ('ok', format, rows), ('refused',) or None (unknown)."""
    shape = draw(st.sampled_from(["bytes", "clean", "clean", "one-odd", "mixed", "big"]))
    if shape == "bytes":
        return draw(st.binary(max_size=300)), None
    if shape == "big":  # near and over the row and size limits
        row = json.dumps({"text": "z" * draw(st.sampled_from([1, 100, 2000, MAX_LINE_BYTES - 20]))}).encode()
        count = draw(st.integers(MAX_ROWS - 3, MAX_ROWS + 3) | st.integers(1, MAX_UPLOAD_BYTES // len(row) + 2))
        data = b"\n".join([row] * count) + b"\n"
        fits = count <= MAX_ROWS and len(data) <= MAX_UPLOAD_BYTES
        return data, ("ok", "text", count) if fits else ("refused",)
    if shape == "mixed":  # any lines, formats mixed
        drawn = draw(st.lists(lines(), max_size=12))
    else:  # rows of one format and blank lines, and maybe one line of any kind among them
        fmt = draw(st.sampled_from(sorted(VALID_ROWS)))
        drawn = draw(st.lists(st.one_of(
            VALID_ROWS[fmt].map(lambda row: (json.dumps(row).encode(), fmt)),
            st.sampled_from([(b"", "blank"), (b"  ", "blank")]),
        ), min_size=1, max_size=12))
        if shape == "one-odd":
            drawn.insert(draw(st.integers(0, len(drawn))), draw(lines()))
    newline = draw(st.sampled_from([b"\n", b"\r\n"]))
    data = newline.join(line for line, _ in drawn) + (newline if draw(st.booleans()) else b"")
    rows = [kind for _, kind in drawn if kind != "blank"]
    formats = set(rows)
    if len(data) > MAX_UPLOAD_BYTES or len(rows) > MAX_ROWS:
        return data, ("refused",)
    if "bad" in rows or "long" in rows or not rows or (formats <= set(VALID_ROWS) and len(formats) > 1):
        return data, ("refused",)
    if len(formats) == 1 and formats <= set(VALID_ROWS):
        return data, ("ok", formats.pop(), len(rows))
    return data, None


@pytest.fixture
def upload_client(backend, monkeypatch):
    for name, value in (("MAX_UPLOAD_BYTES", MAX_UPLOAD_BYTES), ("MAX_LINE_BYTES", MAX_LINE_BYTES),
                        ("MAX_DATASET_ROWS", MAX_ROWS)):
        monkeypatch.setenv(f"TRAINDOCK_{name}", str(value))
    from traindock.settings import get_settings

    get_settings.cache_clear()
    with TestClient(create_app(), headers=authorized(issue("fuzz")), raise_server_exceptions=False) as client:
        yield client


def _stored(client) -> dict[int, dict]:
    datasets, cursor = {}, None
    while True:
        page = client.get("/datasets", params={"limit": 500, **({"cursor": cursor} if cursor else {})})
        assert page.status_code == 200, page.text
        datasets.update({item["id"]: item for item in page.json()["items"]})
        cursor = page.json()["next_cursor"]
        if cursor is None:
            return datasets


def _files(backend) -> set[str]:
    return {path.name for path in (backend.data_dir / "datasets").iterdir()}


def test_any_upload_is_stored_exactly_or_leaves_nothing(upload_client, backend):
    seen = {201: 0, 413: 0, 422: 0}

    @settings(max_examples=EXAMPLES, derandomize=True, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    @given(upload=uploads(), filename=odd_text)
    def check(upload, filename):
        data, expected = upload
        before = _stored(upload_client)
        response = upload_client.post("/datasets", files={"file": (filename or "f.jsonl", data)})
        assert response.status_code < 500, response.text
        after = _stored(upload_client)
        if response.status_code == 201:
            seen[201] += 1
            dataset = response.json()
            assert expected is None or expected[0] == "ok", (expected, dataset)
            if expected is not None:
                assert (dataset["format"], dataset["rows"]) == expected[1:]
            assert dataset["format"] in ("alpaca", "chat", "text")
            assert dataset["rows"] == sum(1 for line in data.split(b"\n") if line.strip())
            assert dataset["bytes"] == len(data) and dataset["sha256"] == hashlib.sha256(data).hexdigest()
            assert (backend.data_dir / "datasets" / f"{dataset['id']}.jsonl").read_bytes() == data
            assert set(after) == set(before) | {dataset["id"]}
            assert after[dataset["id"]] == dataset == upload_client.get(f"/datasets/{dataset['id']}").json()
            assert "\x00" not in dataset["filename"] and "/" not in dataset["filename"]
        else:
            assert response.status_code in (413, 422), response.text
            seen[response.status_code] += 1
            assert expected is None or expected[0] == "refused", (expected, response.text)
            detail = response.json()["detail"]
            if response.status_code == 422:
                assert detail[0]["loc"][:2] == ["body", "file"] and detail[0]["msg"], detail
            assert after == before
        assert _files(backend) == {f"{id}.jsonl" for id in after}, "a leftover file"

    check()
    print(f"\n[{backend.name}] {EXAMPLES} uploads: {seen[201]} stored (201), {seen[413]} too large (413), "
          f"{seen[422]} refused (422)")
    assert min(seen.values()) >= EXAMPLES // 50, seen  # each outcome is exercised


def test_streamed_upload_over_the_limit_is_413_and_leaves_nothing(upload_client, backend):
    """No Content-Length (chunked): the limit is counted as the body arrives. FastAPI turned the
    middleware's error into a 400 'error parsing the body' before."""
    def chunks():
        yield b'--b\r\nContent-Disposition: form-data; name="file"; filename="big.jsonl"\r\n\r\n'
        for _ in range(200):
            yield b'{"text": "' + b"z" * 1000 + b'"}\n'
        yield b"\r\n--b--\r\n"

    response = upload_client.post("/datasets", content=chunks(),
                                  headers={"content-type": "multipart/form-data; boundary=b"})
    assert response.status_code == 413, response.text
    assert _stored(upload_client) == {}
    assert _files(backend) == set()


@pytest.mark.parametrize("line", [b"[" * 100_000 + b"]" * 100_000, b'{"text": "a", "n": ' + b"9" * 5000 + b"}"])
def test_absurd_json_is_422_not_500(client, backend, line):
    """Nested deeper than Python's recursion limit, or an integer longer than it converts: json
    raises RecursionError / ValueError, which the upload did not catch (500)."""
    response = client.post("/datasets", files={"file": ("x.jsonl", b'{"text": "ok"}\n' + line + b"\n")})
    assert response.status_code == 422, response.text
    assert response.json()["detail"][0]["line"] == 2
    assert _files(backend) == set()
