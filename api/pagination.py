"""Cursor pagination: a page of items and the cursor that fetches the next page."""

from typing import Annotated, Generic, TypeVar

from fastapi import Query
from pydantic import BaseModel

from api.schemas import MAX_ID

T = TypeVar("T")

LimitQuery = Annotated[int, Query(ge=1, le=500, description="Items per page.")]
CursorQuery = Annotated[int | None, Query(ge=0, le=MAX_ID, description="next_cursor of the previous page")]


class Page(BaseModel, Generic[T]):
    items: list[T]
    next_cursor: str | None = None


def next_cursor(items: list, limit: int, key) -> str | None:
    """The cursor after a full page; None when this page is the last."""
    return str(key(items[-1])) if len(items) == limit else None
