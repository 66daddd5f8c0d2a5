"""The models a tenant can train from: base models in the server's model roots (name,
architecture and parameter count from config.json), and the tenant's fine-tuned models."""

import json
import struct
from dataclasses import dataclass
from math import prod
from pathlib import Path

MAX_DEPTH = 2  # `name` or `org/name` inside a root


@dataclass
class BaseModelInfo:
    name: str
    architecture: str | None
    parameters: int | None
    created: int


def base_models(roots: list[Path]) -> list[BaseModelInfo]:
    found: dict[str, BaseModelInfo] = {}
    for root in roots:
        for config in sorted(_configs(root, root, 0)):
            name = config.parent.relative_to(root).as_posix()
            found.setdefault(name, describe(name, config.parent))
    return sorted(found.values(), key=lambda model: model.name)


def _configs(root: Path, folder: Path, depth: int):
    if depth > MAX_DEPTH or not folder.is_dir():
        return
    if depth > 0 and (folder / "config.json").is_file():
        yield folder / "config.json"
        return
    for child in folder.iterdir():
        if child.is_dir() and not child.name.startswith(".") and child.resolve().is_relative_to(root.resolve()):
            yield from _configs(root, child, depth + 1)


def describe(name: str, folder: Path) -> BaseModelInfo:
    config_path = folder / "config.json"
    try:
        config = json.loads(config_path.read_text())
    except (OSError, ValueError):
        config = {}
    architectures = config.get("architectures") or []
    architecture = architectures[0] if architectures else config.get("model_type")
    parameters = safetensors_parameters(folder) or parameters_from_config(config)
    return BaseModelInfo(name, architecture, parameters, int(config_path.stat().st_mtime))


def safetensors_parameters(folder: Path) -> int | None:
    """Exact: the element counts in the safetensors headers (a few KB read per file)."""
    total = 0
    files = sorted(folder.glob("*.safetensors"))
    for path in files:
        try:
            with path.open("rb") as stream:
                (size,) = struct.unpack("<Q", stream.read(8))
                header = json.loads(stream.read(min(size, 100 * 1024 * 1024)))
        except (OSError, ValueError, struct.error):
            return None
        total += sum(prod(entry["shape"]) for key, entry in header.items() if key != "__metadata__")
    return total or None


def parameters_from_config(config: dict) -> int | None:
    """An estimate for a decoder-only transformer with gated MLP (Llama, Qwen, Mistral...) when no
    weights are readable."""
    try:
        hidden, layers, vocab = config["hidden_size"], config["num_hidden_layers"], config["vocab_size"]
        intermediate = config.get("intermediate_size", 4 * hidden)
        heads = config["num_attention_heads"]
        kv_heads = config.get("num_key_value_heads", heads)
    except (KeyError, TypeError):
        return None
    head_dim = config.get("head_dim") or hidden // heads
    attention = hidden * heads * head_dim * 2 + hidden * kv_heads * head_dim * 2
    per_layer = attention + 3 * hidden * intermediate + 2 * hidden
    embeddings = vocab * hidden * (1 if config.get("tie_word_embeddings", False) else 2)
    return layers * per_layer + embeddings + hidden
