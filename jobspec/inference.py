"""What an inference server is asked to load: the API resolves it from its records, the server
(worker/serve.py) checks every folder in it again before loading."""

from pydantic import BaseModel, ConfigDict


class InferenceTarget(BaseModel):
    model_config = ConfigDict(frozen=True)

    base: str  # base_model, a folder in a model root
    adapter: str | None = None  # a LoRA adapter folder, relative to the jobs folder
    weights: str | None = None  # a full fine-tune's model folder, relative to the jobs folder
    format: str | None = None  # the data format the model was trained on; None: a base model
