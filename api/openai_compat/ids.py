"""OpenAI-style string ids over traindock's integer ids: `file-12`, `ftjob-3`, `ftevent-40`,
`ftckpt-7`, `we-2` (webhook endpoints). A malformed id names nothing (404), as an unknown one does."""

from jobspec.model import MAX_ID

FILE, JOB, EVENT, CHECKPOINT, WEBHOOK_ENDPOINT = "file", "ftjob", "ftevent", "ftckpt", "we"


def encode(prefix: str, number: int) -> str:
    return f"{prefix}-{number}"


def decode(prefix: str, text: str | None) -> int | None:
    """The integer id of `<prefix>-<n>`; None for anything else."""
    if not text or not text.startswith(prefix + "-"):
        return None
    digits = text[len(prefix) + 1:]
    if not (digits.isascii() and digits.isdigit()) or len(digits) > 19 or not 1 <= int(digits) <= MAX_ID:
        return None
    return int(digits)
