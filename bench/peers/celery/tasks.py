"""The Celery app of the peer benchmark: one no-op task on Redis.

Broker and result backend are the same Redis database
(``CELERY_BENCH_URL``, set by run.sh; default ``redis://127.0.0.1:6379/15``).
Settings are Celery's defaults except where a SKYNET-like guarantee needs
otherwise, and each departure is said below.
"""

import os

from celery import Celery

BENCH_URL = os.environ.get("CELERY_BENCH_URL", "redis://127.0.0.1:6379/15")

app = Celery("skynet_peer_bench", broker=BENCH_URL, backend=BENCH_URL)
app.conf.update(
    # JSON on the wire both ways (Celery's default since 4.0, said explicitly).
    task_serializer="json",
    result_serializer="json",
    accept_content=["json"],
    # Ack after the task ran, not when it was received: a worker that dies
    # mid-task leaves the message to be redelivered, the nearest Celery
    # comes to SKYNET's "a job is not lost". (Default: False.)
    task_acks_late=True,
    # worker_prefetch_multiplier is left at its default, 4: each pool process
    # may hold 4 unacknowledged messages, so with acks_late a worker reserves
    # up to 4 x concurrency tasks ahead. Setting it to 1 is the usual advice
    # for long tasks; for a no-op it would only cost throughput.
    #
    # Results are stored (task_ignore_result defaults to False, said
    # explicitly): the round trip measured is submit -> result visible to the
    # client, as SKYNET's is requested -> succeeded seen by a subscriber.
    task_ignore_result=False,
    # Keep results for an hour (the default is a day); run.sh flushes the
    # benchmark's own Redis DB before every run anyway.
    result_expires=3600,
    broker_connection_retry_on_startup=True,
    # Do not let a stray "celery" default queue on the same Redis DB mix in.
    task_default_queue="skynet_peer_bench",
)


@app.task(name="bench.noop")
def noop():
    """Does nothing: the peer of SKYNET's one 0 ms mock step."""
    return None
