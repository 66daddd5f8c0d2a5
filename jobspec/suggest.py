"""Turn "Extra inputs are not permitted" into "unknown field 'learning_rat'; did you mean ...?"."""

import difflib
import types
import typing
from typing import Any

from pydantic import BaseModel

from jobspec.aliases import TRAINING_ALIASES
from jobspec.model import JobSpec, TrainingSpec


def _model_in(annotation: Any) -> type[BaseModel] | None:
    """The spec model inside a field annotation (handles `X | None`)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        for arg in typing.get_args(annotation):
            if (found := _model_in(arg)) is not None:
                return found
    return None


def _sections(model: type[BaseModel] = JobSpec, path: tuple = ()) -> dict[tuple, type[BaseModel]]:
    """Every (nested) model of the spec by its path: {(): JobSpec, ("training",): TrainingSpec, ...}."""
    found = {path: model}
    for name, field in model.model_fields.items():
        if (sub := _model_in(field.annotation)) is not None:
            found.update(_sections(sub, (*path, name)))
    return found


SECTIONS = _sections()


def _names(model: type[BaseModel]) -> list[str]:
    names = list(model.model_fields)
    return names + list(TRAINING_ALIASES) if model is TrainingSpec else names


def _where(path: tuple) -> str:
    return "in '" + ".".join(path) + "'" if path else "at the top level"


def _suggestion(name: str, path: tuple) -> str:
    here = _names(SECTIONS[path])
    elsewhere = [p for p in SECTIONS if p != path and name in _names(SECTIONS[p])]
    if elsewhere:
        return f"unknown field '{name}' {_where(path)}; '{name}' belongs {_where(elsewhere[0])}"
    close = difflib.get_close_matches(name, here, n=1)
    if close:
        return f"unknown field '{name}'; did you mean '{close[0]}'?"
    for other in SECTIONS:
        close = difflib.get_close_matches(name, _names(SECTIONS[other]), n=1, cutoff=0.8)
        if other != path and close:
            return f"unknown field '{name}'; did you mean '{close[0]}' {_where(other)}?"
    return f"unknown field '{name}' {_where(path)}; valid fields: {', '.join(SECTIONS[path].model_fields)}"


def _section_path(loc: tuple) -> tuple | None:
    """The section path of an extra field's loc, without FastAPI's "body" (or an embedded body name)."""
    parent = tuple(loc[:-1])
    candidates = (parent[1:], parent[2:]) if parent[:1] == ("body",) else (parent,)
    return next((c for c in candidates if c in SECTIONS), None)


def explain_unknown_fields(errors: list[dict]) -> list[dict]:
    """Copies of `errors` with each extra_forbidden message naming the likely intended field."""
    explained = []
    for error in errors:
        loc = tuple(error.get("loc", ()))
        path = _section_path(loc) if error.get("type") == "extra_forbidden" and loc else None
        if path is not None and isinstance(loc[-1], str):
            error = {**error, "msg": _suggestion(loc[-1], path)}
        explained.append(error)
    return explained
