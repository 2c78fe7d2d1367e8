//! `skynet task "<intent>" [--dir D] [--wait]`: submit, and optionally follow
//! the job live until it ends; the exit code is the job's outcome.

use std::time::Duration;

use anyhow::Context;
use chrono::Utc;
use clap::Args;
use futures::StreamExt;
use skynet_bus::codec;
use skynet_contract::task::{TASK_REQUESTED, TaskRequested};
use skynet_contract::{Envelope, JobId, subjects};

use super::ClientArgs;
use crate::render;

/// `skynet task`.
#[derive(Debug, Args)]
pub struct TaskArgs {
    /// What you want done, in plain language.
    pub intent: String,
    /// Working directory for the job's steps.
    #[arg(long = "dir")]
    pub dir: Option<String>,
    #[arg(long)]
    pub project: Option<String>,
    /// Who is asking (default: $USER).
    #[arg(long = "as")]
    pub requested_by: Option<String>,
    /// Follow the job until it ends; exit with its outcome.
    #[arg(long)]
    pub wait: bool,
    /// Give up waiting after this many seconds (exit 6).
    #[arg(long, default_value_t = 3600)]
    pub timeout: u64,
}

/// Exit codes of `skynet task --wait`.
pub mod exit {
    pub const SUCCEEDED: i32 = 0;
    pub const FAILED: i32 = 1;
    pub const DENIED_OR_REJECTED: i32 = 2;
    pub const CANCELLED: i32 = 3;
    pub const TIMED_OUT: i32 = 4;
    pub const GAVE_UP_WAITING: i32 = 6;
}

/// The exit code a terminal event type means, if it is terminal.
pub fn outcome(ty: &str) -> Option<i32> {
    Some(match ty {
        "skynet.job.succeeded.v1" => exit::SUCCEEDED,
        "skynet.job.failed.v1" | "skynet.job.planning_failed.v1" => exit::FAILED,
        "skynet.job.denied.v1" | "skynet.task.rejected.v1" => exit::DENIED_OR_REJECTED,
        "skynet.job.cancelled.v1" => exit::CANCELLED,
        "skynet.job.timed_out.v1" => exit::TIMED_OUT,
        _ => return None,
    })
}

pub async fn run(args: TaskArgs, c: &ClientArgs) -> anyhow::Result<i32> {
    let client = c.connect().await?;
    let js = async_nats::jetstream::new(client.clone());
    let id = uuid::Uuid::new_v4().to_string();
    // `skynet/...` sources are SKYNET's own services'; a user's CLI is a client.
    let user: String = std::env::var("USER")
        .unwrap_or_default()
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || "._-".contains(*c))
        .collect();
    let source = &format!("cli/{}", if user.is_empty() { "anonymous" } else { &user });
    let job = JobId::for_request(source, &id);
    let data = TaskRequested {
        intent: args.intent.clone(),
        working_dir: args.dir.clone(),
        project: args.project.clone(),
        requested_by: args.requested_by.clone().or_else(|| std::env::var("USER").ok()),
        constraints: Default::default(),
        plan: None,
    };
    let env = Envelope::new(TASK_REQUESTED, id, source, None, Utc::now(), &data)?;
    // Listen before submitting, so nothing can be missed: the job is new, so
    // every event of it arrives live (a client reads the log, it creates no
    // consumers on it).
    let mut rejections = client.subscribe(subjects::TASK_REJECTED).await?;
    let mut events = client.subscribe(subjects::job_stream(job)).await?;
    // Submitted as the principal of the token when there is one (the job's
    // requester, whom approvals are checked against); else as a mere claim.
    match c.api_token() {
        Some(token) => {
            let (mut headers, payload) = skynet_bus::codec::encode(&env);
            headers.insert("Authorization", format!("Bearer {token}").as_str());
            let msg = async_nats::jetstream::message::PublishMessage::build().headers(headers).payload(payload);
            js.send_publish(subjects::INTAKE_TASK, msg)
                .await
                .context("submitting the task")?
                .await
                .context("submitting the task")?;
        }
        None => {
            skynet_bus::publish(&js, subjects::INTAKE_TASK, &env).await.context("submitting the task")?;
        }
    }
    let style = c.style();
    if c.json {
        super::emit(serde_json::json!({"job_id": job, "events_subject": subjects::job_stream(job)}));
    } else {
        super::emit(format!("{} {job}", style.bold("job")));
    }
    if !args.wait {
        return Ok(0);
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(args.timeout);
    loop {
        let next = tokio::select! {
            m = events.next() => m.map(|m| (m.headers.clone(), m.payload.clone())),
            r = rejections.next() => r.map(|m| (m.headers.clone(), m.payload.clone())),
            () = tokio::time::sleep_until(deadline) => {
                eprintln!("gave up waiting after {} s; the job goes on: skynet job {job}", args.timeout);
                return Ok(exit::GAVE_UP_WAITING);
            }
        };
        let Some(next) = next else { anyhow::bail!("the event stream ended unexpectedly") };
        let (headers, payload) = next;
        if codec::is_reflected(headers.as_ref()) {
            continue; // a stored message another client aimed at this job's subject
        }
        let Ok(env) = codec::decode(headers.as_ref(), &payload) else { continue };
        let mine = env.subject.as_deref() == Some(&job.to_string());
        if !mine {
            continue; // another submitter's rejection
        }
        if c.json {
            super::emit(serde_json::to_string(&env.to_cloudevent())?);
        } else {
            super::emit(render::event_line(&env, style));
            if env.ty == "skynet.job.policy_decided.v1"
                && env.data["requires_approval"] == true
                && env.data["allowed"] == true
            {
                eprintln!("{}", style.warn(&format!("waiting for approval: skynet approve {job}")));
            }
        }
        if let Some(code) = outcome(&env.ty) {
            return Ok(code);
        }
    }
}
