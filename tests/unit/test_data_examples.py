"""Dataset rows to tokenized examples (worker/data.py) with the tiny model's tokenizer."""

import json

import pytest

pytest.importorskip("transformers")

from worker.data import (  # noqa: E402
    ALPACA_PROMPT, ALPACA_PROMPT_WITH_INPUT, IGNORE_INDEX, ExampleBuilder, PaddingCollator,
    build_examples, read_rows, split_rows,
)
from worker.errors import BadDataset  # noqa: E402
from worker.tinymodel import build_tokenizer  # noqa: E402

CHAT = [
    {"role": "system", "content": "be brief"},
    {"role": "user", "content": "capital of Peru?"},
    {"role": "assistant", "content": "Lima"},
    {"role": "user", "content": "and Chile?"},
    {"role": "assistant", "content": "Santiago"},
]


@pytest.fixture(scope="module")
def tokenizer():
    return build_tokenizer()


def trained_text(tokenizer, example) -> str:
    return tokenizer.decode([label for label in example["labels"] if label != IGNORE_INDEX])


def test_alpaca_masks_the_prompt_unless_training_on_inputs(tokenizer):
    row = {"instruction": "Reverse the word.", "input": "apple", "output": "elppa"}
    masked = ExampleBuilder(tokenizer, 512, train_on_inputs=False).build(row, "alpaca")
    unmasked = ExampleBuilder(tokenizer, 512, train_on_inputs=True).build(row, "alpaca")

    prompt = ALPACA_PROMPT_WITH_INPUT.format(instruction="Reverse the word.", input="apple")
    assert tokenizer.decode(masked["input_ids"]) == f"<s>{prompt}elppa</s>"
    assert trained_text(tokenizer, masked) == "elppa</s>"
    assert unmasked["labels"] == unmasked["input_ids"] == masked["input_ids"]
    assert masked["attention_mask"] == [1] * len(masked["input_ids"])


def test_alpaca_without_input_uses_the_short_template(tokenizer):
    for row in ({"instruction": "Name a colour.", "output": "red"},
                {"instruction": "Name a colour.", "input": "", "output": "red"}):
        example = ExampleBuilder(tokenizer, 512, train_on_inputs=False).build(row, "alpaca")
        assert tokenizer.decode(example["input_ids"]) == "<s>" + ALPACA_PROMPT.format(instruction="Name a colour.") + "red</s>"


def test_text_rows_are_trained_on_whole(tokenizer):
    example = ExampleBuilder(tokenizer, 512, train_on_inputs=False).build({"text": "hello world"}, "text")
    assert tokenizer.decode(example["input_ids"]) == "<s>hello world</s>"
    assert example["labels"] == example["input_ids"]


def test_chat_template_trains_only_the_assistant_turns(tokenizer):
    example = ExampleBuilder(tokenizer, 512, train_on_inputs=False).build({"messages": CHAT}, "chat")
    assert tokenizer.decode(example["input_ids"]) == tokenizer.apply_chat_template(CHAT, tokenize=False)
    assert trained_text(tokenizer, example) == "Lima</s>\nSantiago</s>\n"


def test_chat_without_a_template_uses_role_lines(tokenizer):
    plain = build_tokenizer()
    plain.chat_template = None
    example = ExampleBuilder(plain, 512, train_on_inputs=False).build({"messages": CHAT}, "chat")
    assert plain.decode(example["input_ids"]) == (
        "<s>system: be brief\nuser: capital of Peru?\nassistant: Lima</s>user: and Chile?\nassistant: Santiago</s>"
    )
    assert trained_text(plain, example) == "Lima</s>Santiago</s>"


def test_truncation_to_cutoff_len_and_examples_left_without_a_response(tokenizer):
    builder = ExampleBuilder(tokenizer, 12, train_on_inputs=False)
    long_answer = builder.build({"instruction": "x", "output": "a long answer " * 20}, "alpaca")
    assert long_answer is None  # the prompt alone is longer than 12 tokens
    text = builder.build({"text": "word " * 50}, "text")
    assert len(text["input_ids"]) == len(text["labels"]) == 12
    with pytest.raises(BadDataset, match="cutoff_len 12"):
        build_examples([{"instruction": "x", "output": "y"}], "alpaca", builder, "training")


def test_a_tokenizer_without_bos_gets_no_prefix(tokenizer):
    from tokenizers import processors

    no_bos = build_tokenizer()
    no_bos.backend_tokenizer.post_processor = processors.ByteLevel()
    example = ExampleBuilder(no_bos, 512, train_on_inputs=True).build({"text": "hi"}, "text")
    assert no_bos.decode(example["input_ids"]) == "hi</s>"


def test_read_rows_checks_every_line(tmp_path):
    path = tmp_path / "rows.jsonl"
    path.write_text('{"text": "a"}\n\n{"text": "b"}\n')
    assert read_rows(path, "text") == [{"text": "a"}, {"text": "b"}]

    path.write_text('{"text": "a"}\n{"text": \n')
    with pytest.raises(BadDataset, match="line 2 is not valid JSON"):
        read_rows(path, "text")
    path.write_text(json.dumps({"instruction": "i", "output": "o"}) + "\n")
    with pytest.raises(BadDataset, match="line 1 has the alpaca format, but the job reads the dataset as text"):
        read_rows(path, "text")
    path.write_text('{"messages": []}\n')
    with pytest.raises(BadDataset, match="line 1: 'messages' must be a non-empty list"):
        read_rows(path, "chat")
    path.write_text("\n")
    with pytest.raises(BadDataset, match="no rows"):
        read_rows(path, "text")
    with pytest.raises(BadDataset, match="missing"):
        read_rows(tmp_path / "gone.jsonl", "text")


def test_split_rows_is_seeded_and_sized_by_split_sizes():
    rows = [{"text": str(n)} for n in range(100)]
    train, held_out = split_rows(rows, 0.07, seed=1)
    assert (len(train), len(held_out)) == (93, 7)
    assert sorted(train + held_out, key=lambda row: int(row["text"])) == rows
    assert split_rows(rows, 0.07, seed=1) == (train, held_out)
    assert split_rows(rows, 0.07, seed=2)[1] != held_out
    assert split_rows(rows, 0, seed=1) == (rows, [])
    assert len(split_rows(rows, 10, seed=1)[1]) == 10
    with pytest.raises(BadDataset, match="val_set_size"):
        split_rows(rows, 100, seed=1)


def test_padding_collator_pads_right():
    batch = PaddingCollator(pad_token_id=3)([
        {"input_ids": [1, 5, 6], "attention_mask": [1, 1, 1], "labels": [-100, 5, 6]},
        {"input_ids": [1, 7], "attention_mask": [1, 1], "labels": [1, 7]},
    ])
    assert batch["input_ids"].tolist() == [[1, 5, 6], [1, 7, 3]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1], [1, 1, 0]]
    assert batch["labels"].tolist() == [[-100, 5, 6], [1, 7, -100]]


def test_a_validation_dataset_is_the_evaluation_set_in_its_own_format(tokenizer, tmp_path):
    from jobspec.model import DataSpec
    from worker.data import build_datasets

    train = tmp_path / "train.jsonl"
    train.write_text("".join(json.dumps({"text": f"row {n}"}) + "\n" for n in range(6)))
    valid = tmp_path / "valid.jsonl"
    valid.write_text(json.dumps({"messages": CHAT}) + "\n")
    data = DataSpec(train_on_inputs=False)
    examples, evaluation = build_datasets(train, "text", tokenizer, data, seed=1, eval_source=(valid, "chat"))
    assert len(examples) == 6  # nothing held out of the training rows
    [only] = evaluation
    assert only == ExampleBuilder(tokenizer, 512, train_on_inputs=False).build({"messages": CHAT}, "chat")
    assert build_datasets(train, "text", tokenizer, data, seed=1)[1] is None


def spans(tokenizer, example) -> list[tuple[str, bool]]:
    """The example as (text, learned) runs: which tokens the loss learns, exactly."""
    runs: list[tuple[list[int], bool]] = []
    for token, label in zip(example["input_ids"], example["labels"], strict=True):
        assert label in (token, IGNORE_INDEX)
        learned = label != IGNORE_INDEX
        if runs and runs[-1][1] == learned:
            runs[-1][0].append(token)
        else:
            runs.append(([token], learned))
    return [(tokenizer.decode(tokens), learned) for tokens, learned in runs]


TOOL_CHAT = [
    {"role": "system", "content": "use tools"},
    {"role": "user", "content": "weather in Lima?"},
    {"role": "assistant", "content": None, "tool_calls": [
        {"id": "c1", "type": "function", "function": {"name": "weather", "arguments": '{"city": "Lima"}'}}]},
    {"role": "tool", "tool_call_id": "c1", "content": "22 C"},
    {"role": "assistant", "content": "It is 22 C."},
]


def test_openai_chat_with_tool_calls_learns_the_calls_and_answers_not_the_tool_output(tokenizer):
    plain = build_tokenizer()
    plain.chat_template = None
    example = ExampleBuilder(plain, 512, train_on_inputs=False).build({"messages": TOOL_CHAT}, "chat")
    call = '<tool_call>{"name": "weather", "arguments": "{\\"city\\": \\"Lima\\"}"}</tool_call>'
    assert spans(plain, example) == [
        ("<s>system: use tools\nuser: weather in Lima?\nassistant: ", False),
        (call + "</s>", True),
        ("tool: 22 C\nassistant: ", False),
        ("It is 22 C.</s>", True),
    ]


def test_openai_chat_weight_0_is_never_learned_even_with_train_on_inputs(tokenizer):
    messages = [dict(message) for message in CHAT]
    messages[2]["weight"] = 0  # "Lima"
    masked = ExampleBuilder(tokenizer, 512, train_on_inputs=False).build({"messages": messages}, "chat")
    assert spans(tokenizer, masked) == [
        ("<s><|system|>\nbe brief\n<|user|>\ncapital of Peru?\n<|assistant|>\nLima</s>\n<|user|>\nand Chile?\n"
         "<|assistant|>\n", False),
        ("Santiago</s>\n", True),
    ]
    unmasked = ExampleBuilder(tokenizer, 512, train_on_inputs=True).build({"messages": messages}, "chat")
    assert spans(tokenizer, unmasked) == [
        ("<s><|system|>\nbe brief\n<|user|>\ncapital of Peru?\n<|assistant|>\n", True),
        ("Lima</s>\n", False),
        ("<|user|>\nand Chile?\n<|assistant|>\nSantiago</s>\n", True),
    ]
    with pytest.raises(BadDataset, match="weight 1"):
        read_rows_of(messages=[{**message, "weight": 0} if message["role"] == "assistant" else message
                               for message in CHAT])


def read_rows_of(**row):
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "rows.jsonl"
        path.write_text(json.dumps(row) + "\n")
        return read_rows(path, "chat")


def test_sharegpt_rows_train_like_the_same_chat(tokenizer):
    conversations = [{"from": "system", "value": "be brief"}, {"from": "human", "value": "capital of Peru?"},
                     {"from": "gpt", "value": "Lima"}, {"from": "human", "value": "and Chile?"},
                     {"from": "gpt", "value": "Santiago"}]
    builder = ExampleBuilder(tokenizer, 512, train_on_inputs=False)
    example = builder.build({"conversations": conversations}, "sharegpt")
    assert example == builder.build({"messages": CHAT}, "chat")
    assert spans(tokenizer, example) == [
        ("<s><|system|>\nbe brief\n<|user|>\ncapital of Peru?\n<|assistant|>\n", False),
        ("Lima</s>\n", True),
        ("<|user|>\nand Chile?\n<|assistant|>\n", False),
        ("Santiago</s>\n", True),
    ]
