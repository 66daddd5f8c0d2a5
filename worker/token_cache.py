"""Tokenized examples cached under <data dir>/cache/tokenized/, so a restart, a resume or a second
job on the same data does not tokenize (or pack) again.

An entry is keyed by everything its examples depend on: the dataset's sha256, the tokenizer
(its full definition, special tokens and chat template), the format, cutoff_len, prompt masking,
packing, and the split (val_set_size and the seed draw the evaluation rows). Before any use the
dataset file's sha256 is recomputed and compared with the one recorded at upload: a file changed
on disk is a bad_dataset failure, never silently trained on (nor served from the cache)."""

import hashlib
import json
import os
import tempfile
from pathlib import Path

import numpy as np

from jobspec.model import DataSpec
from worker.data import build_datasets
from worker.errors import BadDataset
from worker.packing import pack_examples

# Bump when the examples built from the same inputs change (templates, masking, packing layout).
EXAMPLES_VERSION = 1
SPLITS = ("train", "eval")


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as data:
            while chunk := data.read(1 << 20):
                digest.update(chunk)
    except FileNotFoundError:
        raise BadDataset(f"the dataset file {path} is missing; upload the dataset again") from None
    except OSError as exc:
        raise BadDataset(f"the dataset file {path} cannot be read: {exc}") from exc
    return digest.hexdigest()


def verify_dataset(path: Path, expected_sha256: str) -> None:
    found = file_sha256(path)
    if found != expected_sha256:
        raise BadDataset(
            f"the dataset file {path} changed on disk since its upload (sha256 {found}, uploaded "
            f"{expected_sha256}); upload the dataset again"
        )


def tokenizer_fingerprint(tokenizer) -> str:
    backend = getattr(tokenizer, "backend_tokenizer", None)
    definition = {
        "class": type(tokenizer).__name__,
        # A fast tokenizer's JSON holds its whole pipeline; a slow one is known by its vocabulary.
        "backend": backend.to_str() if backend is not None else None,
        "vocab": None if backend is not None else sorted(tokenizer.get_vocab().items()),
        "special": [tokenizer.bos_token_id, tokenizer.eos_token_id, tokenizer.pad_token_id],
        "chat_template": getattr(tokenizer, "chat_template", None),
    }
    return hashlib.sha256(json.dumps(definition, sort_keys=True, default=str).encode()).hexdigest()


def cache_key(dataset_sha256: str, tokenizer, fmt: str, data: DataSpec, seed: int) -> str:
    parts = {
        "version": EXAMPLES_VERSION,
        "dataset": dataset_sha256,
        "tokenizer": tokenizer_fingerprint(tokenizer),
        "format": fmt,
        "cutoff_len": data.cutoff_len,
        "train_on_inputs": data.train_on_inputs,
        "packing": data.packing,
        "val_set_size": data.val_set_size,
        "seed": seed,
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()


def save(path: Path, splits: dict[str, list[dict] | None]) -> None:
    arrays = {}
    for split, examples in splits.items():
        if examples is None:
            continue
        arrays[f"{split}/lengths"] = np.array([len(example["input_ids"]) for example in examples], dtype=np.int64)
        for field in examples[0]:
            arrays[f"{split}/{field}"] = np.fromiter(
                (token for example in examples for token in example[field]), dtype=np.int32
            )
    path.parent.mkdir(parents=True, exist_ok=True)
    # Written aside then renamed: a concurrent job or a crash never leaves half a file under the key.
    handle, temporary = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as out:
            np.savez(out, **arrays)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def load(path: Path) -> dict[str, list[dict] | None]:
    with np.load(path, allow_pickle=False) as arrays:
        columns = {name: arrays[name] for name in arrays.files}
    splits: dict[str, list[dict] | None] = {}
    for split in SPLITS:
        if f"{split}/lengths" not in columns:
            splits[split] = None
            continue
        ends = np.cumsum(columns[f"{split}/lengths"]).tolist()
        fields = {name.split("/", 1)[1]: values.tolist() for name, values in columns.items()
                  if name.startswith(f"{split}/") and name != f"{split}/lengths"}
        starts = [0, *ends[:-1]]
        splits[split] = [
            {field: values[start:end] for field, values in fields.items()} for start, end in zip(starts, ends)
        ]
    return splits


def tokenized_datasets(
    path: Path, dataset_sha256: str, fmt: str, tokenizer, data: DataSpec, seed: int, cache_dir: Path,
    eval_source: tuple[Path, str] | None = None,
) -> tuple[list[dict], list[dict] | None, Path | None, bool]:
    """(train examples, packed when data.packing; eval examples or None; the cache file; whether it
    was a hit). With a separate validation file (`eval_source`) nothing is cached: the key
    describes one dataset."""
    verify_dataset(path, dataset_sha256)
    if eval_source is not None:
        train, evaluation = build_datasets(path, fmt, tokenizer, data, seed, eval_source=eval_source)
        return (pack_examples(train, data.cutoff_len) if data.packing else train), evaluation, None, False
    entry = cache_dir / f"{cache_key(dataset_sha256, tokenizer, fmt, data, seed)}.npz"
    if entry.is_file():
        try:
            splits = load(entry)
            return splits["train"], splits["eval"], entry, True
        except (OSError, ValueError, KeyError):
            pass  # unreadable (a disk problem, an old layout): build it again and replace it
    train, evaluation = build_datasets(path, fmt, tokenizer, data, seed)
    if data.packing:
        train = pack_examples(train, data.cutoff_len)
    save(entry, {"train": train, "eval": evaluation})
    return train, evaluation, entry, False
