//! The loop every service runs around a durable pull consumer: fetch, hand each
//! message to the service's handler (several at a time), then ack, or nak with
//! backoff for a retry. A message that keeps failing is dead-lettered with the
//! last error after [`MAX_DELIVERIES`] attempts instead of blocking the stream.
//!
//! Handlers must be idempotent: JetStream delivers at least once, and a crash
//! between the handler's effect and the ack redelivers the message.

use std::future::Future;
use std::time::Duration;

use async_nats::jetstream::{self, AckKind, Message};
use futures::StreamExt;
use tracing::{Instrument, debug, error, info_span, warn};

use crate::dlq::{self, DeadLetter};

/// Deliveries after which a failing message is dead-lettered.
pub const MAX_DELIVERIES: i64 = 10;

/// What the handler made of a message.
#[derive(Debug)]
pub enum Disposition {
    /// Done (including: refused and dead-lettered by the handler itself).
    Ack,
    /// A transient failure (NATS, database): deliver again later.
    Retry(String),
    /// The message can never be handled (undecodable, wrong type): store it in
    /// the dead-letter stream with this code and reason, then ack.
    DeadLetter { code: &'static str, reason: String },
    /// Neither ack nor nak: this delivery is no longer ours (an executor that
    /// lost its lease). The server already gave the message to someone else.
    Abandon,
}

/// Where and how to consume.
#[derive(Debug, Clone)]
pub struct ConsumerSpec {
    pub stream: &'static str,
    pub durable: &'static str,
    /// Service name, for logs and dead letters.
    pub service: &'static str,
    /// Messages handled at once.
    pub concurrency: usize,
    /// Deliveries after which a failing message is given up on.
    pub max_deliveries: i64,
    /// For consumers of job events: the repository (and stage) that records a
    /// given-up message's job as `failed`, so no job is stranded non-terminal.
    pub fail_jobs: Option<(crate::Jobs, skynet_contract::job::Stage)>,
    /// Pull ahead of the free handlers (throughput), or take one message per
    /// free handler and no more (leases: a message waiting in a buffer is not
    /// progress-acked, so its ack wait would run out and a second consumer get
    /// it while this one still starts it).
    pub prefetch: bool,
}

impl ConsumerSpec {
    pub fn new(stream: &'static str, durable: &'static str, service: &'static str, concurrency: usize) -> Self {
        ConsumerSpec {
            stream,
            durable,
            service,
            concurrency,
            max_deliveries: MAX_DELIVERIES,
            fail_jobs: None,
            prefetch: true,
        }
    }

    /// A message given up on fails its job in `stage`, recorded through `jobs`.
    pub fn failing_jobs(mut self, jobs: crate::Jobs, stage: skynet_contract::job::Stage) -> Self {
        self.fail_jobs = Some((jobs, stage));
        self
    }
}

/// Runs until `shutdown` resolves. In-flight messages finish before it returns.
pub async fn run<H, Fut, S>(
    js: jetstream::Context,
    spec: ConsumerSpec,
    handler: H,
    shutdown: S,
) -> Result<(), async_nats::Error>
where
    H: Fn(Message) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Disposition> + Send + 'static,
    S: Future<Output = ()> + Send,
{
    let consumer: jetstream::consumer::PullConsumer =
        js.get_stream(spec.stream).await?.get_consumer(spec.durable).await?;
    // Shared by every message's handling: a JetStream context and a spec
    // holding a job repository are not cheap to clone once per message.
    let (js, spec) = (std::sync::Arc::new(js), std::sync::Arc::new(spec));
    if !spec.prefetch {
        return run_per_slot(js, spec, consumer, handler, shutdown).await;
    }
    // A message stream that ends without a shutdown (its consumer deleted
    // under it) is an error, so the service is restarted rather than left
    // running without consuming.
    let stopped = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = stopped.clone();
    let shutdown = async move {
        shutdown.await;
        flag.store(true, std::sync::atomic::Ordering::SeqCst);
    };
    // Short-lived pulls: a pull waiting on a consumer leader that died (a
    // node of the cluster lost) is only renewed when it expires, so the
    // default 30 s left a stage idle that long after a failover.
    let messages = consumer
        .stream()
        .max_messages_per_batch(spec.concurrency.max(1) * 4)
        .expires(PULL_EXPIRES_PREFETCH)
        .messages()
        .await?
        .take_until(shutdown);
    messages
        .for_each_concurrent(spec.concurrency.max(1), |msg| {
            let (js, spec, handler) = (js.clone(), spec.clone(), handler.clone());
            async move {
                match msg {
                    Ok(msg) => handle_one(&js, &spec, handler, msg).await,
                    Err(e) => {
                        warn!(service = spec.service, error = %e, "consumer stream error; continuing");
                        // Avoid a hot loop while the server is unreachable.
                        tokio::time::sleep(Duration::from_millis(200)).await;
                    }
                }
            }
        })
        .await;
    if stopped.load(std::sync::atomic::Ordering::SeqCst) {
        Ok(())
    } else {
        Err(format!("the message stream of consumer {} ended", spec.durable).into())
    }
}

/// One message per free handler: slots are taken before messages are asked
/// for (as many as are free, in one pull request that the server holds until
/// messages come or it expires), so nothing waits unacknowledged in a buffer.
///
/// Each pull's messages are taken by a task of its own, so the next pull goes
/// out as soon as a slot frees rather than after the previous pull's last
/// message: under a backlog, waiting for each pull before the next capped a
/// stage at one round trip per message or two (measured: the dispatcher held
/// 1,200 messages back with 5 of its 32 slots busy).
async fn run_per_slot<H, Fut, S>(
    js: std::sync::Arc<jetstream::Context>,
    spec: std::sync::Arc<ConsumerSpec>,
    consumer: jetstream::consumer::PullConsumer,
    handler: H,
    shutdown: S,
) -> Result<(), async_nats::Error>
where
    H: Fn(Message) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Disposition> + Send + 'static,
    S: Future<Output = ()> + Send,
{
    let slots = std::sync::Arc::new(tokio::sync::Semaphore::new(spec.concurrency.max(1)));
    // Pull readers and handlers alike; waited for before returning.
    let tasks = tokio_util::task::TaskTracker::new();
    let stopping = tokio_util::sync::CancellationToken::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let first = tokio::select! {
            () = &mut shutdown => break,
            p = slots.clone().acquire_owned() => p?,
        };
        let mut permits = vec![first];
        while let Ok(p) = slots.clone().try_acquire_owned() {
            permits.push(p);
        }
        // Not `fetch` (no-wait: an idle consumer would spin) but a waiting pull.
        let pull = consumer.batch().max_messages(permits.len()).expires(PULL_EXPIRES).messages();
        let batch = tokio::select! {
            () = &mut shutdown => break,
            b = pull => match b {
                Ok(b) => b,
                Err(e) => {
                    warn!(service = spec.service, error = %e, "pulling failed; retrying");
                    drop(permits);
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    continue;
                }
            },
        };
        let (js, spec, handler, stopping, handlers) =
            (js.clone(), spec.clone(), handler.clone(), stopping.clone(), tasks.clone());
        tasks.spawn(async move {
            let mut batch = std::pin::pin!(batch);
            loop {
                let next = tokio::select! {
                    () = stopping.cancelled() => break,
                    m = batch.next() => m,
                };
                let Some(msg) = next else { break };
                let Some(permit) = permits.pop() else { break };
                match msg {
                    Ok(msg) => {
                        let (js, spec, handler) = (js.clone(), spec.clone(), handler.clone());
                        handlers.spawn(async move {
                            handle_one(&js, &spec, handler, msg).await;
                            drop(permit);
                        });
                    }
                    Err(e) => {
                        debug!(service = spec.service, error = %e, "pull ended without a message");
                        break;
                    }
                }
            }
            // Slots the pull did not fill go back here.
        });
    }
    // No message is taken after the shutdown; those being handled finish.
    stopping.cancel();
    tasks.close();
    tasks.wait().await;
    Ok(())
}

/// A cancellation token that fires when `shutdown` resolves: what a service's
/// side tasks (responders, sweeps, loops) stop on, next to its consumer.
pub fn stop_token(shutdown: impl Future<Output = ()> + Send + 'static) -> tokio_util::sync::CancellationToken {
    let token = tokio_util::sync::CancellationToken::new();
    let t = token.clone();
    tokio::spawn(async move {
        shutdown.await;
        t.cancel();
    });
    token
}

/// What a service's tasks (its consumer and side tasks: responders, sweeps,
/// watches) stop on: `shutdown`, or the returned token's cancellation, which
/// [`ending`] fires when the consumer ends. Joined with side tasks that only
/// end on shutdown, a consumer that failed (its consumer deleted under it,
/// say) would leave the service running without consuming, its error unseen
/// and its supervisor never restarting it. (Side tasks may end early and
/// rightly: a sweep with nothing to sweep. They are not wrapped.)
pub fn service_stop<'a>(
    shutdown: impl Future<Output = ()> + Send + 'a,
) -> (futures::future::Shared<futures::future::BoxFuture<'a, ()>>, tokio_util::sync::CancellationToken) {
    use futures::FutureExt;
    let ended = tokio_util::sync::CancellationToken::new();
    let token = ended.clone();
    let stop = async move {
        tokio::select! {
            () = shutdown => {}
            () = token.cancelled() => {}
        }
    };
    (stop.boxed().shared(), ended)
}

/// Runs a service's consumer; when it ends, for whatever reason, the side
/// tasks are told to stop too (see [`service_stop`]). Boxed: a consumer's
/// future is large, and a service future holding it by value (moved through
/// a few stack frames on the way to `tokio::spawn`) overflowed the stack of
/// a debug build.
pub fn ending<'a, T: 'a>(
    task: impl Future<Output = T> + Send + 'a,
    ended: &tokio_util::sync::CancellationToken,
) -> futures::future::BoxFuture<'a, T> {
    use futures::FutureExt;
    let stop_the_others = ended.clone().drop_guard();
    async move {
        let _stop_the_others = stop_the_others;
        task.await
    }
    .boxed()
}

/// How long one pull waits for messages before it is renewed.
const PULL_EXPIRES: Duration = Duration::from_secs(1);
/// The same for a prefetching consumer's pulls (renewed in the background).
const PULL_EXPIRES_PREFETCH: Duration = Duration::from_secs(5);

async fn handle_one<H, Fut>(js: &jetstream::Context, spec: &ConsumerSpec, handler: H, msg: Message)
where
    H: Fn(Message) -> Fut,
    Fut: Future<Output = Disposition>,
{
    let (seq, delivered) = msg.info().map(|i| (i.stream_sequence, i.delivered)).unwrap_or((0, 1));
    // Named after the service and the event kind, a child of the event's trace context.
    let kind = msg.subject.rsplit('.').next().unwrap_or_default();
    let span = info_span!("message", otel.name = %format!("{} {kind}", spec.service), service = spec.service,
        subject = %msg.subject, seq, delivered);
    let inbound = crate::trace::from_headers(msg.headers.as_ref());
    if let Some(tp) = &inbound {
        crate::trace::adopt(&span, tp);
    }
    if delivered > 1 {
        metrics::counter!("skynet_consumer_redeliveries_total", "consumer" => spec.durable).increment(1);
    }
    async {
        let disposition = crate::trace::within(inbound, handler(msg.clone())).await;
        let outcome = match &disposition {
            Disposition::Ack => "ack",
            Disposition::Retry(_) if delivered < spec.max_deliveries => "retry",
            Disposition::Retry(_) | Disposition::DeadLetter { .. } => "dead_letter",
            Disposition::Abandon => "abandon",
        };
        metrics::counter!("skynet_consumer_messages_total", "consumer" => spec.durable, "outcome" => outcome)
            .increment(1);
        let (code, reason) = match disposition {
            Disposition::Ack => {
                if let Err(e) = msg.ack().await {
                    // Redelivered after ack_wait; handlers are idempotent.
                    debug!(error = %e, "ack failed");
                }
                return;
            }
            Disposition::Retry(reason) if delivered < spec.max_deliveries => {
                let delay = backoff(delivered);
                warn!(%reason, ?delay, "handler failed; message will be redelivered");
                if let Err(e) = msg.ack_with(AckKind::Nak(Some(delay))).await {
                    debug!(error = %e, "nak failed");
                }
                return;
            }
            Disposition::Retry(reason) => ("gave_up", format!("failed {delivered} times; last error: {reason}")),
            Disposition::Abandon => {
                debug!("delivery abandoned; its lease moved on");
                return;
            }
            Disposition::DeadLetter { code, reason } => (code, reason),
        };
        error!(%reason, code, "dead-lettering message");
        let dl = DeadLetter {
            origin: spec.service,
            service: spec.service,
            subject: msg.subject.as_str(),
            headers: msg.headers.as_ref(),
            payload: msg.payload.clone(),
            code,
            reason: &reason,
            deliveries: delivered,
            dedupe_key: format!("{}:{}:{seq}", spec.stream, spec.durable),
        };
        let stored = dlq::dead_letter(js, dl).await.map_err(|e| format!("dead-lettering failed: {e}"));
        // The job must end with the message: acked without its `failed`
        // stored, it would stay unfinished for ever.
        let stored = match stored {
            Ok(_) if code == "gave_up" => fail_job(spec, &msg, seq, &reason).await,
            other => other.map(|_| ()),
        };
        let result = match stored {
            Ok(()) => msg.ack().await,
            Err(e) => {
                error!(error = %e, "will retry the message");
                msg.ack_with(AckKind::Nak(Some(Duration::from_secs(5)))).await
            }
        };
        if let Err(e) = result {
            debug!(error = %e, "ack failed");
        }
    }
    .instrument(span)
    .await
}

/// Records `failed` for the job of a message given up on (dead-lettered
/// after its deliveries), naming the stage and the reason: the job would
/// otherwise stay non-terminal for ever. A job already finished is left as is.
/// An error: the log could not be written (the message is to be retried).
async fn fail_job(spec: &ConsumerSpec, msg: &Message, seq: u64, reason: &str) -> Result<(), String> {
    let (Some((jobs, stage)), Some(job)) = (&spec.fail_jobs, skynet_contract::subjects::job_id_of(&msg.subject)) else {
        return Ok(());
    };
    let reason = format!("{} gave up on {} ({reason})", spec.service, msg.subject);
    let cause = format!("gave-up:{}:{}:{seq}", spec.stream, spec.durable);
    let fail = skynet_job::Command::Fail { stage: *stage, reason, step: None };
    match jobs.execute(job, &cause, chrono::Utc::now(), |s| skynet_job::decide(s, fail.clone())).await {
        Ok(crate::Outcome::Appended { .. }) => warn!(job_id = %job, "job failed: a message of it was given up on"),
        Ok(crate::Outcome::Rejected(r)) => debug!(job_id = %job, reason = %r, "given-up message's job left as is"),
        Err(e) => return Err(format!("could not fail job {job} of a given-up message: {e}")),
    }
    Ok(())
}

/// Redelivery delay: 100 ms doubling per delivery, at most 30 s.
fn backoff(delivered: i64) -> Duration {
    let exp = u32::try_from(delivered.clamp(1, 20) - 1).unwrap_or(0);
    Duration::from_millis(100u64.saturating_mul(1 << exp)).min(Duration::from_secs(30))
}

#[cfg(test)]
mod tests {
    #[test]
    fn backoff_doubles_and_caps() {
        use std::time::Duration;
        assert_eq!(super::backoff(1), Duration::from_millis(100));
        assert_eq!(super::backoff(3), Duration::from_millis(400));
        assert_eq!(super::backoff(50), Duration::from_secs(30));
    }
}

/// A job event taken off a consumer: its envelope, job, typed event, and the
/// stream sequence it is stored at.
#[derive(Debug)]
pub struct Received {
    pub env: skynet_contract::Envelope,
    pub job: skynet_contract::JobId,
    pub event: skynet_contract::job::JobEvent,
    pub seq: u64,
}

/// Decodes a job-event message; a message that can never be handled (not a
/// CloudEvent, not a job event, recorded under a `source` that does not own its
/// kind, or not one of `expected` when given) comes back as the dead-letter
/// disposition saying why.
pub fn receive(msg: &Message, expected: Option<skynet_contract::job::JobEventKind>) -> Result<Received, Disposition> {
    let undecodable =
        |e: skynet_contract::DecodeError| Disposition::DeadLetter { code: "undecodable", reason: e.to_string() };
    // A copy of a stored message (a direct-get reply aimed at a job's subject)
    // is not an event any service appended.
    if crate::codec::is_reflected(msg.headers.as_ref()) {
        return Err(Disposition::DeadLetter {
            code: "reflected",
            reason: "a copy of a stored message (it carries Nats-Stream), not an appended event".into(),
        });
    }
    let env = crate::codec::decode(msg.headers.as_ref(), &msg.payload).map_err(undecodable)?;
    let (job, event) = env.job_event().map_err(undecodable)?;
    // A message stored under one job that names another is not that job's event.
    if skynet_contract::subjects::job_id_of(&msg.subject).is_some_and(|j| j != job) {
        return Err(Disposition::DeadLetter {
            code: "wrong_subject",
            reason: format!("event {} names job {job} but is stored under {}", env.id, msg.subject),
        });
    }
    // The broker lets only a kind's owner publish it; this catches what an
    // operator's looser permissions or an old log would let through.
    if let Some(reason) = skynet_contract::owners::wrong_source(event.kind(), &env.source) {
        return Err(Disposition::DeadLetter { code: "wrong_source", reason });
    }
    if let Some(kind) = expected.filter(|k| *k != event.kind()) {
        return Err(Disposition::DeadLetter {
            code: "unexpected_type",
            reason: format!("{:?} on a consumer of {kind:?} events", event.kind()),
        });
    }
    let seq = msg.info().map(|i| i.stream_sequence).unwrap_or(0);
    Ok(Received { env, job, event, seq })
}
