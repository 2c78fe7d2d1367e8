//! `skynet memory search|add|stats|forget`: the memory service over NATS
//! request/reply, as the principal of your token; and `skynet memory rebuild`,
//! an operator's replay of the log into the memory tables.

use anyhow::Context;
use clap::{Args, Subcommand};
use skynet_contract::memory::{self, AddMemory, ForgetMemory, MemoryKind, MemoryQuery, MemoryReply};

use super::ClientArgs;

/// `skynet memory`.
#[derive(Debug, Args)]
pub struct MemoryArgs {
    #[command(subcommand)]
    pub what: MemoryCmd,
}

#[derive(Debug, Subcommand)]
pub enum MemoryCmd {
    /// Records ranked by similarity and importance.
    Search {
        /// What to look for, in words.
        text: String,
        /// Only this kind (task_execution, failure_pattern, success_strategy,
        /// user_preference, environment_fact).
        #[arg(long = "type")]
        kind: Option<String>,
        #[arg(long, default_value_t = 10)]
        limit: u32,
    },
    /// Add a user preference or an environment fact.
    Add {
        /// user_preference or environment_fact.
        #[arg(long = "type", default_value = "environment_fact")]
        kind: String,
        text: String,
    },
    /// Records per kind.
    Stats,
    /// Forget a record (approve role).
    Forget {
        id: String,
        #[arg(long, default_value = "forgotten by request")]
        reason: String,
    },
}

fn kind(name: &str) -> anyhow::Result<MemoryKind> {
    MemoryKind::parse(name).with_context(|| {
        let all: Vec<&str> = MemoryKind::ALL.iter().map(|k| k.as_str()).collect();
        format!("unknown memory type {name:?}; one of {}", all.join(", "))
    })
}

pub async fn run(args: MemoryArgs, c: &ClientArgs) -> anyhow::Result<i32> {
    let token = c.required_token()?;
    let (subject, body) = match args.what {
        MemoryCmd::Search { text, kind: k, limit } => {
            let q = MemoryQuery::Search { token, text, kind: k.as_deref().map(kind).transpose()?, limit };
            (memory::QUERY_SUBJECT, serde_json::to_vec(&q)?)
        }
        MemoryCmd::Stats => (memory::QUERY_SUBJECT, serde_json::to_vec(&MemoryQuery::Stats { token })?),
        MemoryCmd::Add { kind: k, text } => {
            let a = AddMemory { token, kind: kind(&k)?, text, labels: Default::default() };
            (memory::ADD, serde_json::to_vec(&a)?)
        }
        MemoryCmd::Forget { id, reason } => (memory::FORGET, serde_json::to_vec(&ForgetMemory { token, id, reason })?),
    };
    let client = c.connect().await?;
    let reply: MemoryReply =
        c.ask(&client, subject, body, "memory", "start `skynet up` or `skynet run memory`").await?;
    if c.json {
        super::emit(serde_json::to_string_pretty(&reply)?);
    } else if !reply.ok {
        eprintln!("{}: {}", c.style().bad("refused"), reply.message);
    } else {
        super::emit(render(&reply).trim_end());
    }
    Ok(if reply.ok { 0 } else { 1 })
}

/// The human view of a reply.
pub fn render(r: &MemoryReply) -> String {
    let mut out = String::new();
    if !r.message.is_empty() {
        out.push_str(&format!("{}\n", r.message));
    }
    for h in &r.hits {
        out.push_str(&format!(
            "{:<40} {:<17} importance {:.2}  relevance {:.2}  retrieved {}\n    {}\n",
            h.id,
            h.kind.as_str(),
            h.importance,
            h.relevance,
            h.retrieval_count,
            h.text
        ));
    }
    for (k, n) in &r.counts {
        out.push_str(&format!("{k:<17} {n}\n"));
    }
    if let Some(s) = &r.storage {
        out.push_str(&format!("storage: {s}\nembeddings: {}\n", r.embedding_provider.as_deref().unwrap_or("none")));
    }
    out
}
