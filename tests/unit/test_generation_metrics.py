"""Generation metrics (worker/samples.py) and the prompts generation starts from."""

import pytest

from worker.data import ExampleBuilder, IGNORE_INDEX
from worker.samples import SampleGenerator, bleu, exact_match, generation_metrics, rouge_l
from worker.tinymodel import build_tokenizer
from jobspec.model import EvaluationSpec


def test_exact_match_ignores_surrounding_whitespace():
    assert exact_match([" Lima\n", "lima", "Quito"], ["Lima", "Lima", "Lima"]) == pytest.approx(1 / 3)


def test_rouge_l_is_the_f1_of_the_longest_common_subsequence():
    assert rouge_l(["the cat sat"], ["the cat sat"]) == 1.0
    # LCS "the cat" (2 tokens): precision 2/2, recall 2/3.
    assert rouge_l(["the cat"], ["the cat sat"]) == pytest.approx(0.8)
    assert rouge_l(["", "dog"], ["cat", "cat"]) == 0.0


def test_bleu_is_sacrebleus_corpus_score():
    assert bleu(["the cat sat on the mat"], ["the cat sat on the mat"]) == pytest.approx(100)
    assert bleu(["completely different words here"], ["the cat sat on the mat"]) == 0.0
    assert 0 < bleu(["the cat sat on a mat"], ["the cat sat on the mat"]) < 100


def test_only_the_asked_metrics_and_none_without_rows():
    assert set(generation_metrics(["bleu", "exact_match", "bleu"], ["a"], ["a"])) == {"bleu", "exact_match"}
    assert generation_metrics(["rouge_l"], [], []) == {}


@pytest.mark.parametrize("fmt, row", [
    ("alpaca", {"instruction": "Reverse the word.", "input": "castle", "output": "eltsac"}),
    ("alpaca", {"instruction": "What is the capital of Peru?", "output": "Lima"}),
    ("chat", {"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Capital of Peru?"},
                           {"role": "assistant", "content": "Lima"}]}),
])
def test_validation_prompts_are_the_training_examples_prompts(fmt, row):
    """What the model is asked at generation is exactly the prompt part of the training example
    of the same row, and the reference is its answer."""
    tokenizer = build_tokenizer()
    generator = SampleGenerator(EvaluationSpec(samples_from_validation=1), tokenizer, fmt, [row], fmt,
                                cutoff_len=512, batch_size=1, reporter=None)
    [(_, ids, reference)] = generator.validation
    example = ExampleBuilder(tokenizer, cutoff_len=512, train_on_inputs=False).build(row, fmt)
    prompt_length = next(i for i, label in enumerate(example["labels"]) if label != IGNORE_INDEX)
    assert ids == example["input_ids"][:prompt_length]
    assert reference == ("Lima" if fmt == "chat" else row["output"])


def test_a_round_is_bounded_in_time_and_leaves_training_untouched(tmp_path):
    """Past max_generation_s no new batch begins (validation rows went first, so the metrics got
    one); the model's training mode and the RNG are as they were."""
    import torch
    from transformers import AutoModelForCausalLM

    from worker.tinymodel import build_tiny_model

    folder = build_tiny_model(tmp_path / "tiny")
    model = AutoModelForCausalLM.from_pretrained(folder)
    rows = [{"instruction": f"Say {word}.", "output": word} for word in ("one", "two", "three")]
    evaluation = EvaluationSpec(sample_prompts=["Hi"], samples_from_validation=3, generation_metrics=["rouge_l"],
                                max_new_tokens=4, max_generation_s=1e-9)
    generator = SampleGenerator(evaluation, build_tokenizer(), "alpaca", rows, "alpaca", cutoff_len=64,
                                batch_size=1, reporter=None)
    model.train()
    rng = torch.random.get_rng_state()
    metrics = generator.run(model, 5)
    assert model.training and torch.equal(rng, torch.random.get_rng_state())
    assert generator.last_summary["generated"] == 1 and generator.last_summary["skipped"] == 3
    assert generator.last_summary["metric_rows"] == 1 and set(metrics) == {"rouge_l", "generation_seconds"}
    assert generator.steps_done == {5}
