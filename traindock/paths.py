"""Where things live under the data root, and the confinement rules for user-given names."""

from pathlib import Path, PurePosixPath

HUB_ID_CHARS = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.")


class PathRefused(ValueError):
    """A user-given path that would leave the allowed folders."""


def is_hub_id(name: str) -> bool:
    parts = name.split("/")
    return (
        len(parts) in (1, 2)
        and all(part and set(part) <= HUB_ID_CHARS and part not in (".", "..") for part in parts)
        and not name.startswith((".", "-"))
    )


def resolve_base_model(name: str, model_roots: list[Path]) -> Path | None:
    """A folder inside a model root (symlinks resolved), or None when `name` is a hub id that
    names no such folder. Raises PathRefused for anything that would reach outside the roots."""
    if "\x00" in name:
        raise PathRefused("must not contain NUL bytes")
    path = Path(name)
    try:
        if path.is_absolute():
            resolved = path.resolve()
            if not _inside(resolved, model_roots):
                raise PathRefused("must be a hub id or a folder inside one of the server's model roots")
            if not resolved.is_dir():
                raise PathRefused("names no folder inside the server's model roots")
            return resolved
        if ".." in path.parts:
            raise PathRefused("must not contain '..'")
        for root in model_roots:
            candidate = root / path
            if candidate.is_symlink() or candidate.exists():
                resolved = candidate.resolve()
                if not _inside(resolved, model_roots):
                    raise PathRefused("leads outside the server's model roots (through a symlink)")
                if resolved.is_dir():
                    return resolved
        if is_hub_id(name) and Path(name).exists():
            # transformers loads a hub id that names a folder relative to the working directory
            # from that folder, which is outside the model roots.
            raise PathRefused("names a folder relative to the server's working directory, outside its "
                              "model roots")
    except OSError as exc:
        raise PathRefused(f"is not a usable folder name ({exc.strerror})") from None
    except RuntimeError:  # Path.resolve on a symlink loop (Python < 3.13)
        raise PathRefused("is not a usable folder name (a symlink loop)") from None
    if is_hub_id(name):
        return None
    raise PathRefused("is neither a hub id (org/name) nor a folder inside one of the server's model roots")


def _inside(path: Path, roots: list[Path]) -> bool:
    return any(path.is_relative_to(root) for root in roots)


def check_output_name(name: str) -> None:
    """A relative folder name, spelled one way: no absolute path, no '..', no NUL, no '.' or empty
    parts."""
    if "\x00" in name:
        raise PathRefused("must not contain NUL bytes")
    path = Path(name)
    if path.is_absolute() or name.startswith(("/", "\\")):
        raise PathRefused("must be a relative folder name, not an absolute path")
    if any(part == ".." for part in path.parts) or "\\" in name:
        raise PathRefused("must not contain '..' or backslashes")
    if not path.parts or name.strip() in ("", "."):
        raise PathRefused("must name a folder")
    if PurePosixPath(name).as_posix() != name or "." in name.split("/"):
        # './x', 'x/', 'x//y' and 'x' are one folder: one spelling, so one job per folder holds.
        raise PathRefused("must be a plain relative name: no '.' parts, empty parts or trailing '/'")


def job_output_dir(jobs_dir: Path, tenant_id: int, output_name: str | None, job_id: int) -> Path:
    """Each tenant's outputs live in a folder of their own, so names never collide across tenants."""
    name = output_name or f"job-{job_id}"
    check_output_name(name)
    return jobs_dir / f"tenant-{tenant_id}" / name


# The Trainer's own name for a checkpoint folder (transformers' PREFIX_CHECKPOINT_DIR).
CHECKPOINT_PREFIX = "checkpoint-"


def checkpoint_dir(output_dir: Path, step: int) -> Path:
    return output_dir / f"{CHECKPOINT_PREFIX}{step}"


def checkpoint_step(path: str | Path | None) -> int | None:
    """The step of a `checkpoint-<step>` folder; None for anything else."""
    if not path:
        return None
    name = Path(path).name
    digits = name[len(CHECKPOINT_PREFIX):]
    return int(digits) if name.startswith(CHECKPOINT_PREFIX) and digits.isdigit() else None


def checkpoint_steps_on_disk(output_dir: str | Path) -> set[int]:
    folder = Path(output_dir)
    if not folder.is_dir():
        return set()
    return {step for path in folder.iterdir() if path.is_dir() and (step := checkpoint_step(path)) is not None}


def job_logs_dir(logs_dir: Path, job_id: int) -> Path:
    return logs_dir / f"job-{job_id}"


def attempt_log_path(logs_dir: Path, job_id: int, attempt: int) -> Path:
    return job_logs_dir(logs_dir, job_id) / f"attempt-{attempt}.log"


def rank_log_path(attempt_log: Path, rank: int) -> Path:
    """`attempt-<n>.rank-<r>.log` beside the attempt's launcher log (jobs on several GPUs)."""
    return attempt_log.with_name(f"{attempt_log.stem}.rank-{rank}.log")


def rank_exit_path(attempt_log: Path, rank: int) -> Path:
    """Where a rank writes its exit code as it ends (torchrun reports only that some rank failed)."""
    return attempt_log.with_name(f"{attempt_log.stem}.rank-{rank}.exit")
