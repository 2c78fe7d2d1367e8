//! What a chat message asks for (pure). Commands may carry the bot's name
//! (`/status@skynet_bot`, as Telegram sends them in groups); any other text
//! is an intent, as `/task <intent>` is.

/// One request from a chat.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    Start,
    Help,
    Task(String),
    Status(Option<String>),
    Jobs(Option<String>),
    Cancel(String),
    /// A job and, for an ADMIN job, the confirmation typed after it.
    Approve(String, Option<String>),
    Deny(String, String),
    Alerts,
    EmergencyStop(String),
    Resume(String),
    /// A command the bot does not know, or one missing what it needs (the text to answer).
    Invalid(String),
}

impl Request {
    /// Whether it changes anything (submits, decides, stops, resumes).
    pub fn changes_something(&self) -> bool {
        matches!(
            self,
            Request::Task(_)
                | Request::Cancel(_)
                | Request::Approve(..)
                | Request::Deny(..)
                | Request::EmergencyStop(_)
                | Request::Resume(_)
        )
    }

    /// Whether it reads jobs or alerts (the read role's).
    pub fn reads(&self) -> bool {
        matches!(self, Request::Status(_) | Request::Jobs(_) | Request::Alerts)
    }
}

/// The command list given to Telegram (`setMyCommands`) and shown by `/help`.
pub const COMMANDS: &[(&str, &str)] = &[
    ("task", "Submit a task: /task <what to do> (plain text works too)"),
    ("status", "A job's state, or the system's: /status [job]"),
    ("jobs", "Recent jobs: /jobs [state]"),
    ("approve", "Approve a job: /approve <job> [confirmation]"),
    ("deny", "Deny a job: /deny <job> <reason>"),
    ("cancel", "Cancel a job: /cancel <job>"),
    ("alerts", "Firing alerts"),
    ("emergency_stop", "Cancel every running job and pause dispatching: /emergency_stop [reason]"),
    ("resume", "Lift the emergency stop: /resume [reason]"),
    ("help", "What this bot does"),
];

/// Parses one message's text.
pub fn parse(text: &str) -> Request {
    let text = text.trim();
    let Some(command) = text.strip_prefix('/') else {
        return if text.is_empty() {
            Request::Invalid("Send a task, or /help.".into())
        } else {
            Request::Task(text.into())
        };
    };
    let (head, rest) = command.split_once(char::is_whitespace).unwrap_or((command, ""));
    let name = head.split('@').next().unwrap_or_default().to_lowercase();
    let rest = rest.trim();
    let mut words = rest.split_whitespace();
    let first = words.next().map(str::to_owned);
    let after_first =
        || rest.split_once(char::is_whitespace).map(|(_, r)| r.trim().to_owned()).filter(|r| !r.is_empty());
    let need_job = |what: &str| Request::Invalid(format!("Which job? /{what} <job id>"));
    match name.as_str() {
        "start" => Request::Start,
        "help" => Request::Help,
        "task" if rest.is_empty() => Request::Invalid("What should be done? /task <intent>".into()),
        "task" => Request::Task(rest.into()),
        "status" => Request::Status(first),
        "jobs" => Request::Jobs(first),
        "cancel" => first.map_or_else(|| need_job("cancel"), Request::Cancel),
        "approve" => first.map_or_else(|| need_job("approve"), |j| Request::Approve(j, after_first())),
        "deny" => match (first, after_first()) {
            (Some(job), Some(reason)) => Request::Deny(job, reason),
            (Some(_), None) => Request::Invalid("Say why: /deny <job id> <reason>".into()),
            (None, _) => need_job("deny"),
        },
        "alerts" => Request::Alerts,
        "emergency_stop" | "emergencystop" | "stop" => Request::EmergencyStop(rest.into()),
        "resume" => Request::Resume(rest.into()),
        other => Request::Invalid(format!("Unknown command /{other}. /help lists what I do.")),
    }
}

/// The text of `/help`.
pub fn help() -> String {
    let mut out = String::from("SKYNET: submit work, follow it, approve it.\nSend a task as plain text, or use:\n");
    for (name, what) in COMMANDS {
        out.push_str(&format!("\n/{name} — {what}"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_and_plain_text_parse_as_people_type_them() {
        assert_eq!(parse("check git status"), Request::Task("check git status".into()));
        assert_eq!(parse("/task  build the project "), Request::Task("build the project".into()));
        assert!(matches!(parse("/task"), Request::Invalid(_)));
        assert_eq!(parse("/status@skynet_bot"), Request::Status(None));
        assert_eq!(parse("/STATUS abc"), Request::Status(Some("abc".into())));
        assert_eq!(parse("/jobs failed"), Request::Jobs(Some("failed".into())));
        assert_eq!(parse("/approve j1"), Request::Approve("j1".into(), None));
        assert_eq!(parse("/approve j1 I approve j1abc"), Request::Approve("j1".into(), Some("I approve j1abc".into())));
        assert_eq!(parse("/deny j1 too risky now"), Request::Deny("j1".into(), "too risky now".into()));
        assert!(matches!(parse("/deny j1"), Request::Invalid(m) if m.contains("why")));
        assert!(matches!(parse("/cancel"), Request::Invalid(_)));
        assert_eq!(parse("/emergency_stop disk is filling"), Request::EmergencyStop("disk is filling".into()));
        assert_eq!(parse("/resume"), Request::Resume(String::new()));
        assert!(matches!(parse("/rm -rf"), Request::Invalid(m) if m.contains("/rm")));
    }

    #[test]
    fn every_command_is_in_help_and_under_telegrams_limits() {
        let h = help();
        for (name, what) in COMMANDS {
            assert!(h.contains(&format!("/{name}")));
            // setMyCommands: names 1-32 of [a-z0-9_], descriptions 1-256 characters.
            assert!(name.len() <= 32 && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'));
            assert!(!what.is_empty() && what.chars().count() <= 256);
        }
    }
}
