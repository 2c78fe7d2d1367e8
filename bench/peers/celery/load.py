#!/usr/bin/env python3
"""Load generator of the Celery peer benchmark (run by run.sh).

Mirrors the end-to-end part of `skynet bench` (services/cli/src/bench/system.rs):

1. warm-up: 20 tasks offered at once and waited for, then one round trip on
   each thread of the latency pool (so no measured task opens a connection);
2. throughput: N tasks submitted as fast as one client can (`apply_async` in a
   loop, one message per task, as SKYNET's bench publishes one request per
   job), then every result waited for; throughput = N / (last result seen by
   the client - first submission);
3. latency: M tasks offered at a fixed rate (default 50/s) on a fixed
   schedule (a late tick is caught up, like tokio's default interval); each
   task's round trip is from just before `apply_async` to the moment its
   `AsyncResult.get()` returns in the client, on a thread of its own from a
   pool large enough that the generator is not the bottleneck (the largest
   delay between a task's scheduled and actual submission is reported).

Every task must succeed and run exactly once: a task whose result is not
SUCCESS within the deadline, or a worker execution count different from the
number of tasks sent, fails the run with a non-zero exit.

Prints one JSON object on stdout; progress goes to stderr.
"""

import argparse
import concurrent.futures
import json
import math
import os
import platform
import sys
import threading
import time

import celery
import kombu
import redis
from celery.exceptions import TimeoutError as CeleryTimeoutError

from tasks import BENCH_URL, app, noop

WARMUP_TASKS = 20


def log(msg):
    print(f"[celery-peer] {msg}", file=sys.stderr, flush=True)


def fail(msg):
    log(f"FAILED: {msg}")
    sys.exit(1)


def percentile_ms(sorted_us, p):
    """The same rule as SKYNET's bench: element round((n-1)*p) of the sorted list."""
    if not sorted_us:
        return 0.0
    i = int(math.floor((len(sorted_us) - 1) * p + 0.5))
    return sorted_us[min(i, len(sorted_us) - 1)] / 1000.0


def wait_all(results, deadline):
    """Waits for every result until `deadline` (monotonic).

    Returns (succeeded, failed, lost, last_seen): counts of SUCCESS, of other
    final states, of results not ready by the deadline, and the
    perf_counter() at which the last result was seen.
    """
    succeeded = failed = lost = 0
    seen_ids = set()
    for r in results:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            # Past the deadline: only what is already there counts.
            if not r.ready():
                lost += 1
                continue
        else:
            try:
                r.get(timeout=remaining, propagate=False)
            except CeleryTimeoutError:
                lost += 1
                continue
        if r.id in seen_ids:  # cannot happen with uuid4 ids; counted honestly
            continue
        seen_ids.add(r.id)
        if r.state == "SUCCESS":
            succeeded += 1
        else:
            failed += 1
    return succeeded, failed, lost, time.perf_counter()


def check(what, submitted, succeeded, failed, lost):
    if failed or lost or succeeded != submitted:
        fail(
            f"{what}: {failed + lost} of {submitted} tasks did not succeed: "
            f"{failed} failed, {lost} LOST (no result within the deadline)"
        )


def run_warmup(pool_threads, deadline_s):
    """20 tasks at once, then one round trip on each latency-pool thread."""
    results = [noop.apply_async() for _ in range(WARMUP_TASKS)]
    s, f, l, _ = wait_all(results, time.monotonic() + deadline_s)
    check("warm-up", WARMUP_TASKS, s, f, l)

    barrier = threading.Barrier(pool_threads)

    def touch():
        # Every thread has a result backend of its own (Celery's Redis backend
        # is thread-local); the barrier makes each pool thread do one.
        barrier.wait(timeout=deadline_s)
        r = noop.apply_async()
        r.get(timeout=deadline_s, propagate=False)
        return r.state

    executor = concurrent.futures.ThreadPoolExecutor(max_workers=pool_threads, thread_name_prefix="latency")
    states = list(executor.map(lambda _: touch(), range(pool_threads)))
    bad = [s for s in states if s != "SUCCESS"]
    if bad:
        fail(f"warm-up of the latency pool: {len(bad)} of {pool_threads} tasks did not succeed")
    return executor, WARMUP_TASKS + pool_threads


def run_throughput(n, deadline_s):
    results = []
    started = time.perf_counter()
    for _ in range(n):
        results.append(noop.apply_async())
    submitted_at = time.perf_counter()
    s, f, l, last_seen = wait_all(results, time.monotonic() + deadline_s)
    check("throughput run", n, s, f, l)
    elapsed = last_seen - started
    return {
        "throughput_tasks_per_sec": round(n / max(elapsed, 1e-9), 1),
        "throughput_tasks": n,
        "throughput_tasks_succeeded": s,
        "throughput_secs": round(elapsed, 3),
        # How long the client took just to submit: if it is close to
        # throughput_secs, the single submitting client is the limit.
        "throughput_submit_secs": round(submitted_at - started, 3),
    }


def run_latency(executor, m, rate, timeout_s):
    def one(scheduled):
        t0 = time.perf_counter()
        r = noop.apply_async()
        try:
            r.get(timeout=timeout_s, propagate=False)
        except CeleryTimeoutError:
            return t0 - scheduled, None, "LOST"
        t1 = time.perf_counter()
        return t0 - scheduled, t1 - t0, r.state

    futures = []
    start = time.perf_counter()
    for i in range(m):
        at = start + i / rate
        delay = at - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        futures.append(executor.submit(one, at))
    outcomes = [f.result() for f in futures]
    executor.shutdown(wait=True)

    lost = sum(1 for _, _, st in outcomes if st == "LOST")
    failed = sum(1 for _, _, st in outcomes if st not in ("LOST", "SUCCESS"))
    succeeded = m - lost - failed
    check("latency run", m, succeeded, failed, lost)
    lat_us = sorted(int(d * 1e6) for _, d, _ in outcomes)
    lag_max_ms = max((lag for lag, _, _ in outcomes), default=0.0) * 1000.0
    return {
        "p50_ms": percentile_ms(lat_us, 0.50),
        "p95_ms": percentile_ms(lat_us, 0.95),
        "p99_ms": percentile_ms(lat_us, 0.99),
        "max_ms": percentile_ms(lat_us, 1.0),
        "tasks": len(lat_us),
        "rate_per_sec": rate,
        "submit_lag_max_ms": round(lag_max_ms, 3),
    }


def worker_stats(node):
    """The worker's own view: pool, concurrency, and tasks it has run."""
    dest = [node] if node else None
    replies = app.control.inspect(destination=dest, timeout=5).stats() or {}
    if not replies:
        fail(f"no worker answered `inspect stats` ({node or 'any'})")
    executed = sum(r.get("total", {}).get(noop.name, 0) for r in replies.values())
    pools = [r.get("pool", {}) for r in replies.values()]
    return {
        "workers": sorted(replies),
        "executed": executed,
        "pool": ",".join(sorted({p.get("implementation", "?") for p in pools})),
        "concurrency": sum(p.get("max-concurrency", 0) for p in pools),
        "prefetch_count": sum(r.get("prefetch_count", 0) for r in replies.values()),
    }


def redis_info():
    client = redis.Redis.from_url(BENCH_URL)
    out = {"url": BENCH_URL}
    try:
        out["version"] = client.info("server").get("redis_version")
    except redis.RedisError as e:
        out["version"] = f"unknown ({e})"
    for key in ("save", "appendonly", "appendfsync"):
        try:
            out[key] = client.config_get(key).get(key)
        except redis.RedisError:
            out[key] = "unknown (CONFIG GET refused)"
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tasks", type=int, default=3000, help="tasks in the throughput run (default 3000)")
    ap.add_argument("--latency-tasks", type=int, default=500, help="tasks in the latency run (default 500)")
    ap.add_argument("--rate", type=float, default=50.0, help="offered rate of the latency run, per second (default 50)")
    ap.add_argument("--pool-threads", type=int, default=0,
                    help="client threads of the latency run (default max(16, rate))")
    ap.add_argument("--deadline", type=float, default=0.0,
                    help="seconds allowed for all throughput results (default max(60, tasks/20))")
    ap.add_argument("--node", default=os.environ.get("CELERY_BENCH_NODE", ""),
                    help="worker node name to check (default: $CELERY_BENCH_NODE, else every worker)")
    args = ap.parse_args()
    if args.tasks < 1 or args.latency_tasks < 1 or args.rate <= 0:
        fail("--tasks and --latency-tasks must be >= 1 and --rate > 0")
    pool_threads = args.pool_threads or max(16, int(math.ceil(args.rate)))
    deadline = args.deadline or max(60.0, args.tasks / 20.0)

    before = worker_stats(args.node)["executed"]
    log(f"warm-up: {WARMUP_TASKS} tasks + {pool_threads} latency-pool threads")
    executor, warm = run_warmup(pool_threads, 30.0)
    log(f"throughput: {args.tasks} tasks")
    thr = run_throughput(args.tasks, deadline)
    log(f"latency: {args.latency_tasks} tasks at {args.rate:g}/s")
    lat = run_latency(executor, args.latency_tasks, args.rate, 30.0)

    stats = worker_stats(args.node)
    expected = warm + args.tasks + args.latency_tasks
    executed = stats["executed"] - before
    if executed != expected:
        fail(f"the worker ran {executed} tasks for {expected} sent: "
             f"{'some ran more than once' if executed > expected else 'some never ran'}")

    report = {
        "peer": "celery",
        "celery_version": celery.__version__,
        "kombu_version": kombu.__version__,
        "redis_py_version": redis.__version__,
        "pool": stats["pool"],
        "concurrency": stats["concurrency"],
        "prefetch_multiplier": app.conf.worker_prefetch_multiplier,
        "acks_late": bool(app.conf.task_acks_late),
        "result_backend": "redis",
        **thr,
        "latency": lat,
        "executions": {"expected": expected, "counted_by_worker": executed},
        "redis": redis_info(),
        "python": platform.python_version(),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
