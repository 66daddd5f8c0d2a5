"""Generation prompts are the training examples' prompts, token for token; stop sequences cut
streamed text exactly where the whole text would be cut."""

import pytest

from worker.data import ExampleBuilder
from worker.inference import StopCut
from worker.prompts import prompt_ids, row_prompt
from worker.tinymodel import build_tokenizer

ROWS = {
    "alpaca": {"instruction": "Name a colour.", "output": "Blue."},
    "chat": {"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"},
                          {"role": "assistant", "content": "Hello."}]},
    "sharegpt": {"conversations": [{"from": "human", "value": "Hi"}, {"from": "gpt", "value": "Hello."}]},
}


@pytest.fixture(scope="module")
def tokenizers():
    with_template = build_tokenizer()
    without = build_tokenizer()
    without.chat_template = None
    return {"template": with_template, "plain": without}


@pytest.mark.parametrize("fmt", sorted(ROWS))
@pytest.mark.parametrize("kind", ["template", "plain"])
def test_the_prompt_is_the_training_example_up_to_its_answer(tokenizers, fmt, kind):
    tokenizer = tokenizers[kind]
    row = ROWS[fmt]
    example = ExampleBuilder(tokenizer, 512, train_on_inputs=False).build(row, fmt)
    prompt, alpaca_input, reference = row_prompt(row, fmt)
    ids = prompt_ids(tokenizer, fmt, prompt, alpaca_input=alpaca_input)
    assert example["input_ids"][: len(ids)] == ids
    # What follows the prompt in training is exactly what the loss learns: the reference answer.
    answer = [token for token, label in zip(example["input_ids"], example["labels"]) if label != -100]
    assert example["input_ids"][len(ids):len(ids) + len(answer)] == answer
    assert tokenizer.decode(answer, skip_special_tokens=True).strip() == reference


def test_a_text_prompt_of_a_base_model_is_the_text_after_the_special_prefix(tokenizers):
    tokenizer = tokenizers["template"]
    assert prompt_ids(tokenizer, None, "Once upon") == tokenizer.encode("Once upon")  # <s> first
    assert prompt_ids(tokenizer, "chat", "Hi") == prompt_ids(tokenizer, "chat", [{"role": "user", "content": "Hi"}])


def test_text_rows_have_no_prompt_to_answer():
    assert row_prompt({"text": "just text"}, "text") is None
    assert row_prompt({"messages": [{"role": "user", "content": "Hi"}]}, "chat") is None


@pytest.mark.parametrize("pieces", [["The answer", " is forty", " two."], ["The answer is f", "orty two."],
                                    ["T", "he answer is ", "for", "ty", " two."]])
def test_stop_sequences_cut_a_stream_where_they_cut_the_whole_text(pieces):
    cut = StopCut(("forty", "never"))
    out = "".join(cut.feed(piece) for piece in pieces if not cut.stopped)
    assert cut.stopped and out == "The answer is "


def test_held_back_text_comes_out_when_no_stop_follows():
    cut = StopCut(("forty",))
    assert cut.feed("it is fo") == "it is "
    assert cut.feed("ur") == "four"
    assert cut.feed("ty f") == "ty "
    assert cut.flush() == "f" and not cut.stopped
