//! `skynet alerts` (the sentinel's alerts, from its table) and `skynet alerts
//! silence` (a silence by label, recorded by the sentinel as an event).

use std::collections::BTreeMap;

use anyhow::Context;
use clap::{Args, Subcommand};
use skynet_contract::alert::{self, SilenceAlerts};
use skynet_contract::commands::CommandReply;

use super::ClientArgs;
use crate::render::Style;

/// `skynet alerts`.
#[derive(Debug, Args)]
pub struct AlertsArgs {
    #[command(subcommand)]
    pub what: Option<AlertsCmd>,
    /// Resolved alerts too (the latest 100).
    #[arg(long)]
    pub all: bool,
}

#[derive(Debug, Subcommand)]
pub enum AlertsCmd {
    /// Mute the alerts whose labels match, for a time (approve role).
    Silence {
        /// label=value (kind, severity, subject, executor, provider, job, consumer, origin, …); all must match.
        #[arg(long = "match", required = true, value_parser = matcher)]
        matchers: Vec<(String, String)>,
        /// How long: 90s, 30m, 2h, 1d.
        #[arg(long = "for", value_parser = duration)]
        duration: u64,
        #[arg(long, default_value = "silenced by request")]
        reason: String,
    },
}

fn matcher(s: &str) -> Result<(String, String), String> {
    let (k, v) = s.split_once('=').ok_or_else(|| format!("{s:?} is not label=value"))?;
    Ok((k.trim().to_owned(), v.trim().to_owned()))
}

fn duration(s: &str) -> Result<u64, String> {
    let (n, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: u64 = n.parse().map_err(|_| format!("{s:?} is not a duration like 30m or 2h"))?;
    let mult = match unit {
        "" | "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(format!("{s:?}: the unit is s, m, h or d")),
    };
    n.checked_mul(mult).ok_or_else(|| format!("{s:?} is too long"))
}

pub async fn run(args: AlertsArgs, c: &ClientArgs) -> anyhow::Result<i32> {
    match args.what {
        None => list(args.all, c).await,
        Some(AlertsCmd::Silence { matchers, duration, reason }) => silence(matchers, duration, reason, c).await,
    }
}

async fn list(all: bool, c: &ClientArgs) -> anyhow::Result<i32> {
    let db = c.db().await?;
    let rows: Vec<serde_json::Value> = sqlx::query_scalar(
        "SELECT to_jsonb(a) FROM alerts a WHERE $1 OR status = 'firing'
         ORDER BY status = 'firing' DESC, CASE severity WHEN 'critical' THEN 0 WHEN 'warning' THEN 1 ELSE 2 END,
                  raised_at DESC LIMIT 100",
    )
    .bind(all)
    .fetch_all(&db)
    .await
    .context("reading the alerts (is the sentinel running: `skynet up` or `skynet run sentinel`?)")?;
    if c.json {
        super::emit(serde_json::to_string_pretty(&rows)?);
    } else {
        super::emit(render(&rows, c.style()).trim_end());
    }
    Ok(0)
}

/// The human view: one alert per line, most severe first.
pub fn render(rows: &[serde_json::Value], s: Style) -> String {
    if rows.is_empty() {
        return s.ok("no alert firing\n");
    }
    let mut out = String::new();
    for a in rows {
        let severity = a["severity"].as_str().unwrap_or("?");
        let firing = a["status"] == "firing";
        let tag = format!("{:<8}", if firing { severity } else { "resolved" });
        let tag = match (firing, severity) {
            (false, _) => s.dim(&tag),
            (true, "critical") => s.bad(&tag),
            (true, "warning") => s.warn(&tag),
            _ => tag,
        };
        let since = a["raised_at"].as_str().and_then(|t| t.get(..19)).unwrap_or("").replace('T', " ");
        let muted = a["muted"].as_str().map_or(String::new(), |m| format!("  [{m}]"));
        out.push_str(&format!(
            "{tag} {:<18} {}  {since}{muted}\n    {}\n",
            a["kind"].as_str().unwrap_or("?"),
            a["fingerprint"].as_str().unwrap_or("?"),
            printable(a["summary"].as_str().unwrap_or(""))
        ));
        if let Some(u) = a["undelivered"].as_str() {
            out.push_str(&format!("    {}\n", s.warn(&format!("not delivered: {}", printable(u)))));
        }
    }
    out
}

/// Text from the table with control characters (terminal escapes) blanked.
fn printable(s: &str) -> String {
    s.chars().map(|c| if c.is_control() { ' ' } else { c }).collect()
}

async fn silence(
    matchers: Vec<(String, String)>,
    duration_secs: u64,
    reason: String,
    c: &ClientArgs,
) -> anyhow::Result<i32> {
    let token = c.required_token()?;
    let matchers: BTreeMap<String, String> = matchers.into_iter().collect();
    let body = serde_json::to_vec(&SilenceAlerts { token, matchers, duration_secs, reason })?;
    let client = c.connect().await?;
    let reply: CommandReply =
        c.ask(&client, alert::SILENCE, body, "sentinel", "start `skynet up` or `skynet run sentinel`").await?;
    super::command_reply(&reply, c)
}

#[cfg(test)]
mod tests {
    #[test]
    fn durations_and_matchers_parse_or_say_why() {
        assert_eq!(super::duration("90s"), Ok(90));
        assert_eq!(super::duration("2h"), Ok(7200));
        assert_eq!(super::duration("45"), Ok(45));
        assert!(super::duration("2w").is_err() && super::duration("h").is_err());
        assert_eq!(super::matcher("kind = executor_lost"), Ok(("kind".into(), "executor_lost".into())));
        assert!(super::matcher("kind").is_err());
    }
}
