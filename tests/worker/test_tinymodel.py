"""The tiny model: offline, fast, deterministic, and loadable like any hub model."""

import time

from transformers import AutoModelForCausalLM, AutoTokenizer

from worker.tinymodel import build_tiny_model

FILES = ("model.safetensors", "config.json", "tokenizer.json")


def test_same_seed_same_files_and_fast(tmp_path):
    began = time.monotonic()
    first = build_tiny_model(tmp_path / "a", seed=3)
    assert time.monotonic() - began < 3
    second = build_tiny_model(tmp_path / "b", seed=3)
    other = build_tiny_model(tmp_path / "c", seed=4)
    assert all((first / name).read_bytes() == (second / name).read_bytes() for name in FILES)
    assert (first / "model.safetensors").read_bytes() != (other / "model.safetensors").read_bytes()


def test_loads_with_the_auto_classes(tmp_path):
    folder = build_tiny_model(tmp_path / "tiny")
    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder)
    assert (tokenizer.bos_token, tokenizer.eos_token, tokenizer.pad_token) == ("<s>", "</s>", "<pad>")
    assert model.config.vocab_size == len(tokenizer)
    chat = tokenizer.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False, add_generation_prompt=True)
    assert chat == "<s><|user|>\nhi\n<|assistant|>\n"
    ids = tokenizer("What is the capital of France?", return_tensors="pt")["input_ids"]
    assert tokenizer.unk_token_id not in ids[0].tolist()
    assert model(input_ids=ids).logits.shape == (1, ids.shape[1], len(tokenizer))
