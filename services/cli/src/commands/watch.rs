//! `skynet watch [filter]`: tail events as readable lines (`--json`: CloudEvents
//! JSON lines). The filter is a job id, a subject, or nothing (every job event).

use clap::Args;
use futures::StreamExt;
use skynet_bus::codec;

use super::ClientArgs;
use crate::render;

/// `skynet watch`.
#[derive(Debug, Args)]
pub struct WatchArgs {
    /// A job id, a NATS subject (`skynet.job.*.failed`, `skynet.dlq.>`), or nothing.
    pub filter: Option<String>,
    /// Stop after this many events (for scripts).
    #[arg(long)]
    pub count: Option<usize>,
}

/// The subject a filter means.
pub fn subject(filter: Option<&str>) -> String {
    match filter {
        None => "skynet.job.>".into(),
        Some(f) if f.parse::<uuid::Uuid>().is_ok() => format!("skynet.job.{f}.>"),
        Some(f) => f.to_owned(),
    }
}

pub async fn run(args: WatchArgs, c: &ClientArgs) -> anyhow::Result<i32> {
    let client = c.connect().await?;
    let subject = subject(args.filter.as_deref());
    let mut sub = client.subscribe(subject.clone()).await?;
    if !c.json {
        eprintln!("watching {subject} (Ctrl-C to stop)");
    }
    let style = c.style();
    let mut seen = 0usize;
    while let Some(msg) = sub.next().await {
        if codec::is_reflected(msg.headers.as_ref()) {
            continue; // a stored message another client aimed here, not a live event
        }
        let printed = match codec::decode(msg.headers.as_ref(), &msg.payload) {
            Ok(env) if c.json => super::emit(serde_json::to_string(&env.to_cloudevent())?.to_string()),
            Ok(env) => super::emit(render::event_line(&env, style).to_string()),
            Err(e) if c.json => super::emit(format!(
                "{}",
                serde_json::json!({"subject": msg.subject.as_str(), "undecodable": e.to_string()})
            )),
            Err(e) => {
                super::emit(format!("{} {} {e}", style.dim(msg.subject.as_str()), style.warn("(not a CloudEvent)")))
            }
        };
        if !printed {
            break; // stdout was closed (`| head`)
        }
        seen += 1;
        if args.count.is_some_and(|n| seen >= n) {
            break;
        }
    }
    Ok(0)
}
