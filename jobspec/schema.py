"""The job spec as JSON Schema, for clients that build specs without the OpenAPI document.

The parameter document's training names are listed under training's "x-aliases" (alias -> field)
and in the descriptions; they are accepted on input and stored under the field names."""

from jobspec.model import JobSpec


def job_spec_json_schema() -> dict:
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", **JobSpec.model_json_schema()}
