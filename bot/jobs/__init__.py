"""Durable jobs between the webhook receiver and the handlers: a SQLite queue and its workers.

Kept free of heavy imports (git, sqlglot, dbt, PyGithub) because the receiver imports it.
"""
from bot.jobs.queue import Job, JobQueue, job_key
from bot.jobs.worker import TransientError, Worker

__all__ = ["Job", "JobQueue", "job_key", "TransientError", "Worker"]
