"""Generation for the inference server (worker/serve.py): loaded models kept in an LRU within a
memory budget, LoRA adapters switched on a loaded base through peft's multi-adapter API instead of
reloading it, prompts built as the job built its training examples (worker/prompts.py), and one
generation at a time per process (a bounded number of requests wait their turn).

What to load comes as an InferenceTarget (jobspec/inference.py) that the API resolved from its
records; every folder in it is confined again here: a base model inside a model root, a job's folders inside the jobs folder.
"""

import queue
import threading
import time
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
from peft import PeftModel
from transformers import AutoModelForCausalLM, StoppingCriteria, StoppingCriteriaList, TextStreamer

from traindock.paths import PathRefused, resolve_base_model
from traindock.settings import Settings
from traindock.storage import get_store
from worker.model import load_tokenizer
from jobspec.inference import InferenceTarget
from worker.prompts import Prompt, prompt_ids

MAX_ADAPTERS_PER_BASE = 16
# With an object store, a job's folder kept here is compared with the store's (one listing) at most
# this often: a final model or checkpoint rewritten since (a resumed job) is fetched again.
STORE_CHECK_S = 10.0


class InferenceError(Exception):
    def __init__(self, status: int, message: str, *, param: str | None = None, code: str | None = None):
        super().__init__(message)
        self.status, self.message, self.param, self.code = status, message, param, code


@dataclass(frozen=True)
class Sampling:
    max_tokens: int
    temperature: float = 1.0
    top_p: float = 1.0
    stop: tuple[str, ...] = ()
    seed: int | None = None
    # max_tokens was the server's default, not the client's: shortened to what the context has left
    fit_context: bool = False


class Loaded:
    def __init__(self, model, tokenizer, size: int):
        self.model, self.tokenizer, self.size = model, tokenizer, size
        self.adapters: OrderedDict[str, str] = OrderedDict()  # adapter identity -> peft adapter name
        self.context_length = getattr(model.config, "max_position_embeddings", None)


@dataclass
class Prepared:
    loaded: Loaded
    adapter: str | None  # peft adapter name; None: the model without adapters
    ids: list[int]
    max_tokens: int  # the sampling's, or what the context has left (Sampling.fit_context)


@dataclass
class Finished:
    finish_reason: str
    prompt_tokens: int
    completion_tokens: int
    seconds: float


class Engine:
    def __init__(self, settings: Settings):
        self.settings = settings
        self.models: OrderedDict[str, Loaded] = OrderedDict()
        self.budget = int(settings.inference_memory_gb * 2**30)
        self.busy = threading.Lock()  # one generation at a time
        self.waiting = 0
        self.waiting_lock = threading.Lock()
        self.store_checked: dict[Path, float] = {}  # a job's folder: when it was last compared with the store

    # ---- Turns ----------------------------------------------------------------------------------

    def take_turn(self) -> None:
        """Wait for the model (one generation at a time); a bounded number of requests wait."""
        with self.waiting_lock:
            if self.busy.locked() and self.waiting >= self.settings.inference_max_waiting:
                raise InferenceError(503, "the inference server is busy: too many requests are waiting; "
                                     "retry later", code="overloaded")
            self.waiting += 1
        try:
            if not self.busy.acquire(timeout=self.settings.inference_queue_timeout_s):
                raise InferenceError(503, f"no turn on the inference server within "
                                     f"{self.settings.inference_queue_timeout_s:g} s; retry later", code="overloaded")
        finally:
            with self.waiting_lock:
                self.waiting -= 1

    def end_turn(self) -> None:
        self.busy.release()

    # ---- Models -----------------------------------------------------------------------------------

    def prepare(self, target: InferenceTarget, prompt: Prompt, sampling: Sampling, *, prompt_param: str) -> Prepared:
        """Within a turn: the model loaded, its adapter chosen, the prompt tokenized and checked."""
        base = self._base_folder(target.base)
        weights = self._job_folder(target.weights) if target.weights else None
        adapter = self._job_folder(target.adapter) if target.adapter else None
        loaded = self._load(weights or base, base)
        name = self._adapter(loaded, adapter) if adapter else None
        ids = prompt_ids(loaded.tokenizer, target.format, prompt)
        limit = loaded.context_length
        if limit is not None and len(ids) + sampling.max_tokens > limit:
            if sampling.fit_context and len(ids) < limit:
                return Prepared(loaded, name, ids, limit - len(ids))
            if len(ids) >= limit:
                raise InferenceError(400, f"the prompt is {len(ids)} tokens, and the model's context is {limit} "
                                     "tokens", param=prompt_param, code="context_length_exceeded")
            raise InferenceError(400, f"max_tokens {sampling.max_tokens} and the prompt's {len(ids)} tokens exceed "
                                 f"the model's context of {limit} tokens: ask for at most {limit - len(ids)}",
                                 param="max_tokens", code="context_length_exceeded")
        return Prepared(loaded, name, ids, sampling.max_tokens)

    def _base_folder(self, name: str) -> Path:
        try:
            folder = resolve_base_model(name, self.settings.effective_model_roots)
        except PathRefused as exc:
            raise InferenceError(404, f"model '{name}' {exc}", param="model", code="model_not_found") from None
        if folder is None or not (folder / "config.json").is_file():
            raise InferenceError(404, f"model '{name}' is no model in this server's model roots",
                                 param="model", code="model_not_found")
        return folder

    def _job_folder(self, relative: str) -> Path:
        """From the store when this machine has not got it (another machine trained it), or has an
        older copy (the job was resumed and wrote it again; compared every STORE_CHECK_S)."""
        jobs = self.settings.jobs_dir.resolve()
        folder = (jobs / relative).resolve()
        store = get_store()
        if (not Path(relative).is_absolute() and folder.is_relative_to(jobs) and store.copies
                and (not folder.is_dir() or (checked := self.store_checked.get(folder)) is None
                     or time.monotonic() - checked >= STORE_CHECK_S)):
            store.fetch_dir(store.location_of(folder))
            self.store_checked[folder] = time.monotonic()
        if Path(relative).is_absolute() or not folder.is_relative_to(jobs) or not folder.is_dir():
            raise InferenceError(404, "the model's files are missing on this inference server", param="model",
                                 code="model_not_found")
        return folder

    def _load(self, folder: Path, base: Path) -> Loaded:
        """A folder rewritten since it was loaded (a checkpoint of a replaced timeline) is loaded anew."""
        key = _identity(folder, "*.safetensors")
        if key in self.models:
            self.models.move_to_end(key)
            return self.models[key]
        for stale in [k for k in self.models if k.rpartition("@")[0] == str(folder)]:
            del self.models[stale]
        tokenizer = load_tokenizer(str(base), base.name)
        model = AutoModelForCausalLM.from_pretrained(str(folder), dtype="auto")
        if torch.cuda.is_available():
            model = model.to("cuda")
        model.eval()
        size = sum(p.numel() * p.element_size() for p in model.parameters())
        while self.models and sum(m.size for m in self.models.values()) + size > self.budget:
            self.models.popitem(last=False)  # the least recently used
        loaded = self.models[key] = Loaded(model, tokenizer, size)
        return loaded

    def _adapter(self, loaded: Loaded, folder: Path) -> str:
        """The peft adapter name of `folder` on the loaded base, loaded beside the others if new.
        A folder rewritten since (a checkpoint of a replaced timeline) is a new adapter."""
        identity = _identity(folder, "adapter_model.*")
        if identity in loaded.adapters:
            loaded.adapters.move_to_end(identity)
            return loaded.adapters[identity]
        name = f"adapter{time.monotonic_ns()}"
        if isinstance(loaded.model, PeftModel):
            loaded.model.load_adapter(str(folder), adapter_name=name)
        else:
            loaded.model = PeftModel.from_pretrained(loaded.model, str(folder), adapter_name=name)
        loaded.model.eval()
        loaded.adapters[identity] = name
        if len(loaded.adapters) > MAX_ADAPTERS_PER_BASE:
            _, oldest = loaded.adapters.popitem(last=False)
            loaded.model.delete_adapter(oldest)
        return name

    # ---- Generation -------------------------------------------------------------------------------

    def stream(self, prepared: Prepared, sampling: Sampling,
               abandoned: threading.Event | None = None) -> Iterator[str | Finished]:
        """Text pieces as they are generated (stop sequences cut out), then one Finished. Setting
        `abandoned` stops the generation at its next token."""
        loaded = prepared.loaded
        model, tokenizer = loaded.model, loaded.tokenizer
        streamer = _Pieces(tokenizer)
        abandoned = abandoned or threading.Event()
        # The tokenizer's eos ends training examples; a chat model's own end-of-turn ids end its turns.
        configured = getattr(model.generation_config, "eos_token_id", None)
        configured = configured if isinstance(configured, list) else [configured]
        eos = [i for i in dict.fromkeys([tokenizer.eos_token_id, *configured]) if i is not None]
        result: dict = {}
        started = time.monotonic()
        device = next(model.parameters()).device
        kwargs = dict(
            input_ids=torch.tensor([prepared.ids], device=device), attention_mask=None,
            max_new_tokens=prepared.max_tokens, streamer=streamer,
            pad_token_id=tokenizer.pad_token_id, eos_token_id=eos or None,
            stopping_criteria=StoppingCriteriaList([_Abandoned(abandoned)]),
        )
        kwargs["attention_mask"] = torch.ones_like(kwargs["input_ids"])
        if sampling.temperature > 0:
            kwargs.update(do_sample=True, temperature=sampling.temperature, top_p=sampling.top_p, top_k=0)
        else:
            kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
        if sampling.stop:
            kwargs.update(stop_strings=list(sampling.stop), tokenizer=tokenizer)

        def generate() -> None:
            try:
                if sampling.seed is not None:
                    torch.manual_seed(sampling.seed)
                with torch.inference_mode(), self._adapter_in_use(model, prepared.adapter):
                    result["sequences"] = model.generate(**kwargs)
            except BaseException as exc:  # ends the streamer's wait, and is raised below
                result["error"] = exc
                streamer.end()

        thread = threading.Thread(target=generate, name="traindock-generate", daemon=True)
        thread.start()
        cut = StopCut(sampling.stop)
        try:
            for piece in streamer:
                if (text := cut.feed(piece)):
                    yield text
                if cut.stopped:
                    abandoned.set()
                    break
            thread.join()
            if "error" in result:
                raise result["error"]
            if not cut.stopped and (text := cut.flush()):
                yield text
            new = result["sequences"][0][len(prepared.ids):].tolist()
            ended = bool(new) and new[-1] in eos
            reason = "stop" if cut.stopped or ended or len(new) < prepared.max_tokens else "length"
            yield Finished(reason, len(prepared.ids), len(new), time.monotonic() - started)
        finally:
            abandoned.set()  # a client that went away stops the generation at the next token
            thread.join()

    @staticmethod
    def _adapter_in_use(model, adapter: str | None):
        if not isinstance(model, PeftModel):
            return _Nothing()
        if adapter is None:
            return model.disable_adapter()
        model.set_adapter(adapter)
        return _Nothing()


def _identity(folder: Path, weights: str) -> str:
    """The folder and when its weights were written."""
    files = sorted(folder.glob(weights))
    return f"{folder}@{files[0].stat().st_mtime_ns if files else 0}"


class _Pieces(TextStreamer):
    """The decoded text as it is generated; iterating takes all that is ready at once, so a reader
    slower than generation gets fewer, longer pieces instead of falling behind one token at a time."""

    END = object()

    def __init__(self, tokenizer):
        super().__init__(tokenizer, skip_prompt=True, skip_special_tokens=True)
        self.ready: queue.SimpleQueue = queue.SimpleQueue()

    def on_finalized_text(self, text: str, stream_end: bool = False) -> None:
        self.ready.put(text)
        if stream_end:
            self.ready.put(self.END)

    def __iter__(self):
        ended = False
        while not ended:
            pieces = [self.ready.get()]
            while True:
                try:
                    pieces.append(self.ready.get_nowait())
                except queue.Empty:
                    break
            ended = pieces[-1] is self.END
            text = "".join(piece for piece in pieces if piece is not self.END)
            if text:
                yield text


class _Nothing:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


class _Abandoned(StoppingCriteria):
    def __init__(self, flag: threading.Event):
        self.flag = flag

    def __call__(self, input_ids, scores, **kwargs):
        return torch.full((input_ids.shape[0],), self.flag.is_set(), dtype=torch.bool, device=input_ids.device)


class StopCut:
    """Cuts streamed text at the first stop sequence, holding back only what could still begin one."""

    def __init__(self, stop: tuple[str, ...]):
        self.stop = [s for s in stop if s]
        self.held = ""
        self.stopped = False

    def feed(self, piece: str) -> str:
        if not self.stop:
            return piece
        text = self.held + piece
        found = [index for s in self.stop if (index := text.find(s)) >= 0]
        if found:
            self.stopped, self.held = True, ""
            return text[: min(found)]
        keep = max((n for s in self.stop for n in range(1, len(s)) if text.endswith(s[:n])), default=0)
        self.held = text[len(text) - keep:] if keep else ""
        return text[: len(text) - keep]

    def flush(self) -> str:
        held, self.held = self.held, ""
        return held
