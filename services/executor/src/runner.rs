//! Running one job under one lease: take it, run its remaining steps in order,
//! record every result under the lease, and end it (succeeded, failed, timed
//! out or cancelled).

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use async_nats::jetstream::{AckKind, Message, object_store};
use chrono::Utc;
use futures::StreamExt;
use sha2::{Digest, Sha256};
use skynet_bus::consumer::Disposition;
use skynet_bus::{Jobs, Outcome, codec};
use skynet_contract::job::{
    ArtifactStored, OutputStream, StepFailed, StepOutput, StepSucceeded, TimedOut, TimeoutScope,
};
use skynet_contract::{ExecStep, JobEventKind, JobId, subjects};
use skynet_job::{Command, IllegalTransition, Job, Rejection, Status, StepStatus, decide};
use skynet_rules::{catalog, sandbox};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, info, info_span, warn};

use crate::config::Config;
use crate::providers::{Provider, StepOutcome, StepRequest};

/// Largest artifact stored (bigger ones are refused with a warning).
const MAX_ARTIFACT_BYTES: u64 = 64 * 1024 * 1024;

/// Everything a runner needs; shared by all jobs of one executor.
#[derive(Clone)]
pub struct Ctx {
    pub config: Arc<Config>,
    pub providers: Arc<HashMap<&'static str, Provider>>,
    pub jobs: Jobs,
    /// Core NATS, for cancel notifications.
    pub nats: async_nats::Client,
    pub output: object_store::ObjectStore,
    pub artifacts: object_store::ObjectStore,
    /// The system-wide pause: an emergency stop cancels what runs here.
    pub pause: skynet_bus::pause::PauseWatch,
}

/// Why a run stopped early.
enum Stop {
    /// Another executor holds a newer lease: record nothing more, do not ack.
    LostLease,
    /// The log could not be written: let the message be redelivered.
    Transient(String),
}

/// One job under one lease.
struct Run<'a> {
    ctx: &'a Ctx,
    /// The job's provider, once known: what the job left running on it stops
    /// before the job is recorded as ended.
    provider: Option<&'a Provider>,
    job: JobId,
    lease: u64,
    /// Cancelled when the lease is no longer ours: nothing more is recorded.
    lost: CancellationToken,
    /// The job as of the last event this run recorded or loaded.
    state: Option<Job>,
    seq: u64,
    cause: String,
    /// Who stopped the system and why, when an emergency stop (not a
    /// person's cancel of this job) is what cancels it.
    emergency: Arc<OnceLock<(String, String)>>,
}

impl Run<'_> {
    /// Records a command's events; keeps the local state current.
    async fn record(&mut self, what: &str, cmd: Command) -> Result<Option<Rejection>, Stop> {
        if self.lost.is_cancelled() {
            return Err(Stop::LostLease);
        }
        let ends_job = matches!(
            cmd,
            Command::Finish { .. } | Command::TimeOut(_) | Command::ConfirmCancel { .. } | Command::Fail { .. }
        );
        if ends_job && let Some(p) = self.provider {
            let stopped = p.end_job(&self.job.to_string()).await;
            if stopped > 0 {
                info!(stopped, "stopped what the job left running");
            }
        }
        let cause = format!("{}:{}:{what}", self.cause, self.lease);
        let known = Some((self.state.clone(), self.seq));
        match self.ctx.jobs.execute_from(self.job, known, &cause, Utc::now(), |s| decide(s, cmd.clone())).await {
            Ok(Outcome::Appended { seq, state, .. }) => {
                self.seq = seq;
                self.state = Some(*state);
                Ok(None)
            }
            Ok(Outcome::Rejected(Rejection::Illegal(IllegalTransition::StaleLease { .. }))) => Err(Stop::LostLease),
            Ok(Outcome::Rejected(r)) => {
                // The log moved on without us (e.g. cancelled); reload for the caller.
                if let Ok((state, seq)) = self.ctx.jobs.load(self.job).await {
                    self.state = state;
                    self.seq = seq;
                }
                Ok(Some(r))
            }
            Err(e) => Err(Stop::Transient(e.to_string())),
        }
    }

    fn status(&self) -> Option<Status> {
        self.state.as_ref().map(|j| j.status)
    }
}

/// Handles one `scheduled` delivery.
pub async fn handle(ctx: &Ctx, msg: Message) -> Disposition {
    // The same checks as every consumer: a real event, its owner's, of this job.
    let (env, job) = match skynet_bus::consumer::receive(&msg, Some(JobEventKind::Scheduled)) {
        Ok(r) => (r.env, r.job),
        Err(d) => return d,
    };
    let lease = msg.info().map(|i| u64::try_from(i.delivered).unwrap_or(1)).unwrap_or(1);
    let at = msg.info().map(|i| i.stream_sequence).unwrap_or(0);
    let span =
        info_span!("job", service = "executor", executor = %ctx.config.id, job_id = %job, event_id = %env.id, lease);
    async move {
        // Subscribe before loading, so a cancel between the two is not missed.
        // `stop` kills the running step's process group: a person's cancel, or
        // the lease going to another executor (`lost`, which also stops any
        // recording — whatever this executor did after that is not the truth).
        let (stop, lost) = (CancellationToken::new(), CancellationToken::new());
        let watcher = match ctx.nats.subscribe(subjects::job_event(job, "cancel_requested")).await {
            Ok(mut sub) => {
                let token = stop.clone();
                tokio::spawn(async move {
                    if sub.next().await.is_some() {
                        token.cancel();
                    }
                })
            }
            Err(e) => return Disposition::Retry(format!("subscribing to cancels: {e}")),
        };
        let takeover = match ctx.nats.subscribe(subjects::job_event(job, "started")).await {
            Ok(sub) => watch_takeover(sub, lease, lost.clone(), stop.clone()),
            Err(e) => return Disposition::Retry(format!("subscribing to takeovers: {e}")),
        };
        // Failed by someone else (the watchdog): the step is killed, nothing more recorded.
        let ended = match ctx.nats.subscribe(subjects::job_event(job, "failed")).await {
            Ok(mut sub) => {
                let (lost, stop) = (lost.clone(), stop.clone());
                tokio::spawn(async move {
                    if sub.next().await.is_some() {
                        warn!("the job was failed elsewhere; stopping the step and recording nothing more");
                        lost.cancel();
                        stop.cancel();
                    }
                })
            }
            Err(e) => return Disposition::Retry(format!("subscribing to failures: {e}")),
        };
        // An emergency stop (now, or already in force) stops the step.
        let emergency = Arc::new(OnceLock::new());
        let stopped = {
            let (pause, stop, emergency) = (ctx.pause.clone(), stop.clone(), emergency.clone());
            tokio::spawn(async move {
                pause.stopping().await;
                warn!("emergency stop: cancelling the job");
                let _ = emergency.set(stopped_by(&pause.current()));
                stop.cancel();
            })
        };
        let progress = keep_lease(msg.clone(), &ctx.config, lost.clone(), stop.clone());
        let delivered = msg.info().map(|i| i.delivered).unwrap_or(1);
        let result = run_job(ctx, job, lease, env.id.clone(), (&stop, &lost, &emergency), delivered, at).await;
        // Whatever the job left running here (a dev server) ends with it —
        // finished, cancelled, or lost to another executor.
        for provider in ctx.providers.values() {
            provider.end_job(&job.to_string()).await;
        }
        progress.abort();
        stopped.abort();
        watcher.abort();
        takeover.abort();
        ended.abort();
        match result {
            Ok(()) => Disposition::Ack,
            Err(Stop::LostLease) => {
                warn!("lease lost to another executor; stopping without recording");
                Disposition::Abandon
            }
            Err(Stop::Transient(e)) => Disposition::Retry(e),
        }
    }
    .instrument(span)
    .await
}

/// Keeps the delivery (the lease) ours with progress acks — the first at once,
/// then every `progress_ms` — each confirmed by the server (a double ack). One
/// that is not confirmed within half the ack wait means the lease may be gone:
/// the step is killed and nothing more recorded.
fn keep_lease(
    msg: Message,
    config: &Config,
    lost: CancellationToken,
    stop: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    let period = Duration::from_millis(config.progress_ms);
    let confirm_within = Duration::from_millis(config.lease_ms / 2);
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(period);
        loop {
            tick.tick().await;
            match tokio::time::timeout(confirm_within, msg.double_ack_with(AckKind::Progress)).await {
                Ok(Ok(())) => {}
                outcome => {
                    warn!(?outcome, "lease not confirmed in time; stopping the step and recording nothing more");
                    lost.cancel();
                    stop.cancel();
                    return;
                }
            }
        }
    })
}

/// Watches the job's `started` events: one under a newer lease means another
/// executor took the job over (this one was paused or cut off past the ack
/// wait); the step is killed and nothing more recorded.
fn watch_takeover(
    mut sub: async_nats::Subscriber,
    lease: u64,
    lost: CancellationToken,
    stop: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        while let Some(msg) = sub.next().await {
            let newer = codec::decode(msg.headers.as_ref(), &msg.payload)
                .ok()
                .and_then(|env| env.data.get("lease").and_then(serde_json::Value::as_u64))
                .is_some_and(|l| l > lease);
            if newer {
                warn!(lease, "another executor took the job over; stopping the step and recording nothing more");
                lost.cancel();
                stop.cancel();
                return;
            }
        }
    })
}

#[allow(clippy::too_many_arguments)]
async fn run_job(
    ctx: &Ctx,
    job: JobId,
    lease: u64,
    cause: String,
    (cancel, lost, emergency): (&CancellationToken, &CancellationToken, &Arc<OnceLock<(String, String)>>),
    delivered: i64,
    at: u64,
) -> Result<(), Stop> {
    let (state, seq) = ctx.jobs.load_at(job, at).await.map_err(|e| Stop::Transient(e.to_string()))?;
    let emergency = emergency.clone();
    let mut run = Run { ctx, provider: None, job, lease, lost: lost.clone(), state, seq, cause, emergency };
    match run.status() {
        Some(Status::Scheduled | Status::Running) => {}
        // A cancel requested while a previous executor ran it, which then died.
        Some(Status::Cancelling) => {
            run.record(
                "cancel",
                Command::ConfirmCancel { by: ctx.config.id.clone(), reason: "cancelled before it could resume".into() },
            )
            .await?;
            return Ok(());
        }
        // Cancelled (or otherwise finished) before it started: it never starts.
        _ => return Ok(()),
    }
    let Some(job_state) = run.state.clone() else { return Ok(()) };
    let Some(provider_name) = job_state.provider.clone() else { return Ok(()) };
    let Some(provider) = ctx.providers.get(provider_name.as_str()) else {
        if delivered >= 5 {
            let reason = format!("no executor offers provider {provider_name}");
            run.record(
                "no-provider",
                Command::Fail { stage: skynet_contract::job::Stage::Execution, reason, step: None },
            )
            .await?;
            return Ok(());
        }
        return Err(Stop::Transient(format!("this executor does not offer provider {provider_name}")));
    };
    run.provider = Some(provider);
    let Some(spec) = job_state.spec.clone() else { return Ok(()) };
    // Executors offering the same provider may differ (one has a desktop, or
    // `gh`, another not): a step this one cannot run goes back for another,
    // and fails the job, naming it, once no executor took it.
    let offered = provider.capabilities();
    if let Some(step) = spec.steps.iter().find(|s| !offered.iter().any(|c| c == "*" || *c == s.action)) {
        let reason = format!(
            "{} is not available on this executor ({provider_name} here lacks it; see skynet status)",
            step.action
        );
        if delivered >= 5 {
            let fail = Command::Fail { stage: skynet_contract::job::Stage::Execution, reason, step: Some(step.index) };
            run.record("lacks-capability", fail).await?;
            return Ok(());
        }
        return Err(Stop::Transient(reason));
    }
    // A background step (a dev server) that succeeded under an earlier lease
    // died with that executor: the later steps would run without it.
    if let Some(step) = spec.steps.iter().find(|s| {
        s.action == "start_dev_server"
            && run.state.as_ref().and_then(|j| j.steps.get(s.index as usize)).map(|x| x.status)
                == Some(StepStatus::Succeeded)
    }) {
        let reason = format!(
            "the dev server of step {} ran under an earlier lease and is gone with it; the job cannot resume",
            step.index
        );
        let fail = Command::Fail { stage: skynet_contract::job::Stage::Execution, reason, step: Some(step.index) };
        run.record("background-lost", fail).await?;
        return Ok(());
    }
    // Dispatched before an emergency stop that is still in force: it never starts.
    if ctx.pause.current().stops_running() && ctx.pause.refresh().await.stops_running() {
        let _ = run.emergency.set(stopped_by(&ctx.pause.current()));
        return confirm_cancel(&mut run).await;
    }
    if let Some(r) = run.record("start", Command::Start { executor: ctx.config.id.clone(), lease }).await? {
        info!(reason = %r, "job not startable");
        return Ok(());
    }
    info!(provider = %provider_name, "job started");
    let started = Instant::now();
    let total = Duration::from_secs(spec.total_timeout_secs);

    for step in &spec.steps {
        let done = run.state.as_ref().and_then(|j| j.steps.get(step.index as usize)).map(|s| s.status);
        if matches!(done, Some(StepStatus::Succeeded))
            || (matches!(done, Some(StepStatus::Failed)) && step.continue_on_error)
        {
            continue; // finished under an earlier lease
        }
        // A result refused because the job ended meanwhile: run nothing more.
        if run.status().is_some_and(Status::is_terminal) {
            info!(status = ?run.status(), "job ended elsewhere; no further step runs");
            return Ok(());
        }
        if cancel.is_cancelled() || run.status() == Some(Status::Cancelling) {
            return confirm_cancel(&mut run).await;
        }
        let remaining = total.saturating_sub(started.elapsed());
        if remaining.is_zero() {
            run.record("job-timeout", Command::TimeOut(timed_out(TimeoutScope::Job, None, total, &provider_name)))
                .await?;
            return Ok(());
        }
        let (limit, scope) = step_limit(step, remaining);
        let req = StepRequest {
            job: job.to_string(),
            step: step.index,
            lease,
            action: step.action.clone(),
            params: step.params.clone(),
            working_dir: spec.working_dir.clone().into(),
            timeout: limit,
        };
        let step_started = Instant::now();
        let (tx, rx) = mpsc::channel(256);
        let mut exec = std::pin::pin!(provider.run(&req, tx, cancel));
        // A step that ends within the live delay is not streamed: its output
        // (when small) rides on its result event. Longer steps stream live.
        let quick = tokio::select! {
            o = &mut exec => Some(o),
            () = tokio::time::sleep(Duration::from_millis(ctx.config.live_delay_ms)) => None,
        };
        let (outcome, streamed) = match quick {
            // Done before anyone could watch it start: the result event is the
            // step's whole record (fewer events per job; its duration says when
            // it started).
            Some(o) => (o, false),
            None => {
                let start = Command::StartStep { step: step.index, executor: ctx.config.id.clone(), lease };
                if let Some(r) = run.record(&format!("s{}-start", step.index), start).await? {
                    // Dropping the running step kills it (kill_on_drop).
                    info!(reason = %r, "step not startable; job moved on");
                    return Ok(());
                }
                let (o, fwd) = tokio::join!(exec, forward_output(&mut run, step.index, rx));
                fwd?;
                (o, true)
            }
        };
        let duration_ms = u64::try_from(step_started.elapsed().as_millis()).unwrap_or(u64::MAX);
        let inline = ctx.config.inline_output_bytes;
        // Inline only what is text: output that is not UTF-8 goes to the object
        // store, where every byte survives (an event can only carry text).
        let text_only = std::str::from_utf8(&outcome.stdout).is_ok() && std::str::from_utf8(&outcome.stderr).is_ok();
        let (stdout, stderr, output_ref) =
            if !streamed && text_only && outcome.stdout.len() <= inline && outcome.stderr.len() <= inline {
                let text = |b: &[u8]| (!b.is_empty()).then(|| String::from_utf8_lossy(b).into_owned());
                (text(&outcome.stdout), text(&outcome.stderr), None)
            } else {
                (None, None, store_output(ctx, job, step.index, lease, &outcome).await)
            };
        if outcome.succeeded() {
            // What the step made is stored and recorded before the step is:
            // a step recorded as succeeded is never run again, so an artifact
            // left for later could be lost.
            for made in &outcome.produced {
                let bytes = tokio::fs::read(made.path())
                    .await
                    .map_err(|e| Stop::Transient(format!("reading the archive {}: {e}", made.name)))?;
                let key = format!("{job}/steps/{}/{}", step.index, made.name);
                let cause = format!("s{}-artifact-{}", step.index, made.name);
                put_artifact(&mut run, &cause, &made.name, key, made.path(), bytes).await?;
            }
            let ok = StepSucceeded { step: step.index, exit_code: 0, duration_ms, output_ref, stdout, stderr, lease };
            run.record(&format!("s{}-done", step.index), Command::StepSucceeded(ok)).await?;
            continue;
        }
        let failed = StepFailed {
            step: step.index,
            exit_code: outcome.exit_code,
            error: outcome.failure(),
            duration_ms,
            continue_on_error: step.continue_on_error,
            output_ref,
            stdout,
            stderr,
            lease,
        };
        run.record(&format!("s{}-done", step.index), Command::StepFailed(failed)).await?;
        if outcome.cancelled {
            return confirm_cancel(&mut run).await;
        }
        if outcome.timed_out {
            run.record("timeout", Command::TimeOut(timed_out(scope, Some(step.index), limit, &provider_name))).await?;
            return Ok(());
        }
        if !step.continue_on_error {
            break;
        }
    }
    if cancel.is_cancelled() {
        return confirm_cancel(&mut run).await;
    }
    if run.state.as_ref().is_some_and(Job::all_steps_done) {
        store_artifacts(
            &mut run,
            job_state.plan.as_ref().map(|p| p.artifacts.clone()).unwrap_or_default(),
            &spec.working_dir,
        )
        .await?;
    }
    let duration_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    run.record("finish", Command::Finish { duration_ms }).await?;
    info!(status = ?run.status(), duration_ms, "job finished");
    Ok(())
}

/// The step's limit and which level set it: the job's remaining time, or the
/// tightest of the step's own timeout, the step cap, the per-action table and
/// the command's `timeout` parameter.
fn step_limit(step: &ExecStep, remaining: Duration) -> (Duration, TimeoutScope) {
    let action_cap = catalog::action(&step.action).map_or(300, |a| a.action_timeout_secs);
    let command = step.params.get("timeout").and_then(serde_json::Value::as_u64).unwrap_or(u64::MAX);
    let own =
        Duration::from_secs(step.timeout_secs.min(catalog::STEP_TIMEOUT_CAP_SECS).min(action_cap).min(command).max(1));
    if remaining < own { (remaining, TimeoutScope::Job) } else { (own, TimeoutScope::Step) }
}

fn timed_out(scope: TimeoutScope, step: Option<u32>, limit: Duration, provider: &str) -> TimedOut {
    TimedOut { scope, step, limit_secs: limit.as_secs().max(1), provider: Some(provider.to_owned()) }
}

async fn confirm_cancel(run: &mut Run<'_>) -> Result<(), Stop> {
    // An emergency stop names who stopped the system; a person's cancel was
    // recorded (with their name) by the policy already.
    let (by, reason) = match run.emergency.get() {
        Some(stop) => stop.clone(),
        None => (run.ctx.config.id.clone(), "cancelled by request".to_owned()),
    };
    if let Some(r) = run.record("cancelled", Command::ConfirmCancel { by, reason }).await? {
        info!(reason = %r, "cancel confirmation refused");
    }
    Ok(())
}

/// Who stopped the system and the reason a stopped job's `cancelled` gives.
fn stopped_by(state: &skynet_contract::system::SystemState) -> (String, String) {
    let (by, why) = state.last.as_ref().map_or(("?", ""), |l| (l.by.as_str(), l.reason.as_str()));
    (by.to_owned(), format!("emergency stop: {}", if why.is_empty() { "no reason given" } else { why }))
}

/// Appends live output as bounded `step_output` events while the step runs.
async fn forward_output(
    run: &mut Run<'_>,
    step: u32,
    mut rx: mpsc::Receiver<(OutputStream, String)>,
) -> Result<(), Stop> {
    let (max_bytes, max_chunks) = (run.ctx.config.live_chunk_bytes, run.ctx.config.live_chunks_per_step);
    let mut seq = 0u32;
    while let Some((stream, mut text)) = rx.recv().await {
        // Coalesce what has already arrived, up to one chunk.
        while text.len() < max_bytes {
            match rx.try_recv() {
                Ok((s, more)) if s == stream => text.push_str(&more),
                _ => break,
            }
        }
        if seq >= max_chunks {
            continue; // the stored log has the rest
        }
        let mut cut = text.len().min(max_bytes);
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
        if seq + 1 == max_chunks {
            text.push_str("\n[live output limit reached; the full output is stored]\n");
        }
        let out = StepOutput { step, stream, seq, chunk: text };
        run.record(&format!("s{step}-out{seq}"), Command::RecordOutput(out)).await?;
        seq += 1;
    }
    Ok(())
}

/// Stores the step's full output; returns its reference (`<job>/<step>/<lease>`).
async fn store_output(ctx: &Ctx, job: JobId, step: u32, lease: u64, o: &StepOutcome) -> Option<String> {
    if o.stdout.is_empty() && o.stderr.is_empty() {
        return None;
    }
    let base = format!("{job}/{step}/{lease}");
    // Both streams are stored (an empty one too), so a reader finds both.
    for (name, bytes) in [("stdout", &o.stdout), ("stderr", &o.stderr)] {
        let mut reader: &[u8] = bytes;
        if let Err(e) = ctx.output.put(format!("{base}/{name}").as_str(), &mut reader).await {
            warn!(error = %e, "storing step output failed; the live events keep what they had");
            return None;
        }
    }
    Some(base)
}

/// Stores every artifact the plan named that exists inside the working directory.
async fn store_artifacts(run: &mut Run<'_>, names: Vec<String>, working_dir: &str) -> Result<(), Stop> {
    let root = std::path::PathBuf::from(working_dir);
    // Inside the job's directory, never inside a denied path (SKYNET's own
    // data), and never through a symbolic link in the last component: the
    // denied paths resolved once for all of this job's artifacts.
    let denied =
        run.ctx.config.providers.local.as_ref().map(|l| sandbox::canonical_denied(&l.denied_paths)).unwrap_or_default();
    for name in names {
        let path = match sandbox::check_path(&name, &root, std::slice::from_ref(&root), &denied) {
            Ok(p) => p,
            Err(e) => {
                warn!(artifact = %name, error = %e, "artifact not stored");
                continue;
            }
        };
        let Ok(meta) = tokio::fs::metadata(&path).await else { continue };
        if !meta.is_file() || meta.len() > MAX_ARTIFACT_BYTES {
            warn!(artifact = %name, size = meta.len(), "artifact not stored: not a file or too large");
            continue;
        }
        let Ok(bytes) = tokio::fs::read(&path).await else { continue };
        let key = format!("{}/{}", run.job, name.trim_start_matches("./"));
        put_artifact(run, &format!("artifact-{name}"), &name, key, &path, bytes).await?;
    }
    Ok(())
}

/// Stores one artifact's bytes under `key` and records it with its size and SHA-256.
async fn put_artifact(
    run: &mut Run<'_>,
    cause: &str,
    name: &str,
    key: String,
    path: &std::path::Path,
    bytes: Vec<u8>,
) -> Result<(), Stop> {
    let sha256 = hex::encode(Sha256::digest(&bytes));
    let content_type = mime_guess::from_path(path).first_or_octet_stream().essence_str().to_owned();
    let mut reader: &[u8] = &bytes;
    if let Err(e) = run.ctx.artifacts.put(key.as_str(), &mut reader).await {
        return Err(Stop::Transient(format!("storing artifact {name}: {e}")));
    }
    let a = ArtifactStored {
        name: name.to_owned(),
        bucket: skynet_bus::definitions::ARTIFACTS_BUCKET.into(),
        key,
        size_bytes: bytes.len() as u64,
        content_type,
        sha256,
        lease: run.lease,
    };
    if let Some(r) = run.record(cause, Command::RecordArtifact(a)).await? {
        return Err(Stop::Transient(format!("artifact {name} not recorded: {r}")));
    }
    Ok(())
}
