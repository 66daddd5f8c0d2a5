"""The elements of an uploaded JSON array, one at a time, each as a JSONL line: an array file is
checked and stored like a JSONL file, without ever holding the whole file in memory."""

import codecs
import json
from collections.abc import Iterable, Iterator


class ArrayError(ValueError):
    """What is wrong, and at which element (None: the array itself)."""

    def __init__(self, message: str, element: int | None):
        super().__init__(message)
        self.element = element


def array_elements_as_lines(chunks: Iterable[bytes], max_element_bytes: int) -> Iterator[bytes]:
    """Each element of the top-level array re-encoded as one JSONL line (elements that are not
    valid JSON raise ArrayError naming the element)."""
    decoder = json.JSONDecoder()
    decode = codecs.getincrementaldecoder("utf-8")().decode
    text, state, number = "", "start", 0
    pieces = iter(chunks)
    done = False
    while not done:
        chunk = next(pieces, None)
        try:
            text += decode(chunk or b"", final=chunk is None)
        except UnicodeDecodeError:
            raise ArrayError("not valid UTF-8", number + 1) from None
        done = chunk is None
        pos = 0
        while True:
            while pos < len(text) and text[pos] in " \t\r\n":
                pos += 1
            if pos == len(text):
                break
            char = text[pos]
            if state == "start":
                if char != "[":
                    raise ArrayError("a JSON array file must start with '['", None)
                state, pos = "first", pos + 1
            elif state in ("first", "after") and char == "]":
                state, pos = "end", pos + 1
            elif state == "after":
                if char != ",":
                    raise ArrayError(f"expected ',' or ']' after element {number}", number)
                state, pos = "next", pos + 1
            elif state in ("first", "next"):
                try:
                    value, end = decoder.raw_decode(text, pos)
                except json.JSONDecodeError as exc:
                    if not done and len(text) - pos <= max_element_bytes:
                        break  # the element goes on in the next chunk
                    reason = (f"longer than the limit of {max_element_bytes} bytes" if not done
                              else f"invalid JSON: {exc.msg}")
                    raise ArrayError(reason, number + 1) from None
                except (RecursionError, ValueError) as exc:
                    raise ArrayError(f"invalid JSON: {exc}" if isinstance(exc, ValueError)
                                     else "invalid JSON: nested too deeply", number + 1) from None
                if end == len(text) and not done and not isinstance(value, (dict, list, str)):
                    break  # a number or literal may go on in the next chunk
                number += 1
                state, pos = "after", end
                yield (json.dumps(value, ensure_ascii=False) + "\n").encode()
            else:
                raise ArrayError("content after the end of the array", None)
        text = text[pos:]
    if state != "end":
        raise ArrayError("the JSON array is not closed with ']'", None)
