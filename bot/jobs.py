"""Scheduled jobs: APScheduler 3.x in the ``revieee serve`` process.

Jobs are this module's functions, referenced as ``"bot.jobs:<name>"`` (a persistent job store
keeps references, not closures); each calls the :class:`~bot.lifecycle.Lifecycle` installed at
start and is safe to run twice. The job store is SQLAlchemy's, in a SQLite file next to the
database (``revieee.db`` -> ``revieee-jobs.db``), so a restart knows when each job last ran:
with ``coalesce`` and a misfire grace, a reminder missed while revieee was down runs once when
it comes back (the same morning), not once per missed run. Ids are stable; a job whose trigger
is unchanged is kept as stored (so its missed run is not forgotten), a changed one replaced.
Times are in the configured ``timezone``.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger

from bot.config import DAY_NAMES, Settings
from bot.lifecycle import Lifecycle

log = logging.getLogger("revieee.jobs")

_lifecycle: Lifecycle | None = None
EXPIRE_EVERY = 600  # seconds between expiry checks
REMINDER_GRACE = 6 * 3600  # a reminder missed by up to 6 hours still goes out (once)


def install(lifecycle: Lifecycle | None) -> None:
    """Make ``lifecycle`` the one the jobs run against (None: the jobs do nothing)."""
    global _lifecycle
    _lifecycle = lifecycle


def _run(name: str) -> Any:
    if _lifecycle is None:
        log.warning("job %s skipped: no lifecycle installed", name)
        return None
    try:
        return getattr(_lifecycle, name)()
    except Exception:
        log.exception("job failed job=%s", name)
        raise


def remind() -> Any:
    return _run("remind")


def expire() -> Any:
    return _run("expire")


def sweep() -> Any:
    return _run("sweep")


def summary() -> Any:
    return _run("post_summary")


def sleep() -> Any:
    return _run("sleep")


def wake() -> Any:
    return _run("wake")


def jobstore_path(database: str) -> Path:
    path = Path(database)
    return path.with_name(f"{path.stem}-jobs.db")


def job_specs(settings: Settings) -> dict[str, tuple[str, Any, int]]:
    """id -> (function reference, trigger, misfire grace in seconds)."""
    zone = settings.zone
    work_days = ",".join(DAY_NAMES[d] for d in settings.work_days)
    at = divmod(settings.reminder_time, 60)
    specs: dict[str, tuple[str, Any, int]] = {
        "revieee-remind": (
            "bot.jobs:remind",
            CronTrigger(day_of_week=work_days, hour=at[0], minute=at[1], timezone=zone),
            REMINDER_GRACE,
        ),
        "revieee-expire": (
            "bot.jobs:expire",
            IntervalTrigger(seconds=EXPIRE_EVERY, timezone=zone),
            EXPIRE_EVERY,
        ),
        "revieee-sweep": (
            "bot.jobs:sweep",
            IntervalTrigger(seconds=int(settings.sweep_interval), timezone=zone),
            int(settings.sweep_interval),
        ),
        "revieee-summary": (
            "bot.jobs:summary",
            CronTrigger(
                day_of_week=DAY_NAMES[settings.summary_day],
                hour=at[0],
                minute=at[1],
                timezone=zone,
            ),
            24 * 3600,
        ),
    }
    if settings.sleep:
        start, end = divmod(settings.work_hours[0], 60), divmod(settings.work_hours[1], 60)
        specs["revieee-sleep"] = (
            "bot.jobs:sleep",
            CronTrigger(hour=end[0], minute=end[1], timezone=zone),
            12 * 3600,
        )
        specs["revieee-wake"] = (
            "bot.jobs:wake",
            CronTrigger(day_of_week=work_days, hour=start[0], minute=start[1], timezone=zone),
            4 * 3600,
        )
    return specs


def start_scheduler(
    settings: Settings, lifecycle: Lifecycle, jobstore: str | Path | None = None
) -> BackgroundScheduler:
    """Start the scheduler with revieee's jobs (stable ids) on the persistent job store."""
    install(lifecycle)
    path = Path(jobstore or jobstore_path(settings.database)).resolve()
    path.parent.mkdir(parents=True, exist_ok=True)
    scheduler = BackgroundScheduler(
        jobstores={"default": SQLAlchemyJobStore(url=f"sqlite:///{path}")},
        executors={"default": ThreadPoolExecutor(1)},  # one job at a time
        job_defaults={"coalesce": True, "max_instances": 1},
        timezone=settings.zone,
    )
    scheduler.start(paused=True)  # reconcile the stored jobs before any of them runs
    specs = job_specs(settings)
    for job in scheduler.get_jobs():
        if job.id.startswith("revieee-") and job.id not in specs:
            scheduler.remove_job(job.id)  # e.g. sleep hours switched off
    for job_id, (func, trigger, grace) in specs.items():
        stored = scheduler.get_job(job_id)
        if (
            stored is not None
            and str(stored.trigger) == str(trigger)
            and str(stored.trigger.timezone) == str(trigger.timezone)
            and stored.misfire_grace_time == grace
        ):
            continue  # keep its next run time: a run missed while down is caught up, once
        scheduler.add_job(
            func, trigger, id=job_id, name=job_id, misfire_grace_time=grace, replace_existing=True
        )
    scheduler.resume()
    log.info("scheduler started jobs=%s timezone=%s", ",".join(sorted(specs)), settings.timezone)
    return scheduler
