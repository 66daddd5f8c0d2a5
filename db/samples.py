"""Sample generations (the job spec's `evaluation` section): what the model generated for each
sample prompt at each evaluation step and at the end of training. One row per (job, step,
prompt_index): a repeated round (a resumed attempt's) replaces the earlier outputs."""

from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from db.events import add_event
from db.models import Sample, utcnow
from db.upsert import upsert

SAMPLES_GENERATED = "samples.generated"


def record_samples(
    session: Session, job_id: int, run_id: int | None, step: int, samples: list[dict[str, Any]],
    summary: dict[str, Any],
) -> None:
    """`samples`: {prompt_index, source, prompt, output, reference}; `summary` (the round's
    seconds, counts and generation metrics) goes into the one `samples.generated` event."""
    now = utcnow()
    rows = [{"job_id": job_id, "run_id": run_id, "step": step, "prompt_index": sample["prompt_index"],
             "source": sample["source"], "prompt": sample["prompt"], "output": sample["output"],
             "reference": sample.get("reference"), "created_at": now} for sample in samples]
    upsert(session, Sample, rows, keys=["job_id", "step", "prompt_index"],
           update=["run_id", "source", "prompt", "output", "reference", "created_at"])
    metrics = summary.get("metrics") or {}
    described = "".join(f", {name} {value:.4g}" for name, value in metrics.items())
    add_event(session, job_id, SAMPLES_GENERATED,
              f"step {step}: {len(samples)} samples generated in {summary.get('seconds', 0):.1f}s{described}",
              run_id=run_id, data={"step": step, "samples": len(samples), **summary})


def list_samples(
    session: Session, job_id: int, *, step: int | None = None, prompt_index: int | None = None,
) -> list[Sample]:
    """By step, then prompt index."""
    query = select(Sample).where(Sample.job_id == job_id)
    if step is not None:
        query = query.where(Sample.step == step)
    if prompt_index is not None:
        query = query.where(Sample.prompt_index == prompt_index)
    return list(session.scalars(query.order_by(Sample.step, Sample.prompt_index)))


def delete_samples_after(session: Session, job_id: int, step: int) -> int:
    """Forget the samples past `step`: a resume from there replaces that part of the run."""
    return session.execute(delete(Sample).where(Sample.job_id == job_id, Sample.step > step)).rowcount
