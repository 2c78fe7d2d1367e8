//! The action catalog: the names the dispatcher may emit and executors run,
//! the parameters each takes (with their kinds), and the time each may take.
//!
//! A step may carry only the parameters its action declares, each of its kind:
//! anything else is refused when the plan is validated (by the planner, for
//! supplied and LLM plans, and again by the dispatcher), naming the step and the
//! parameter. No READ_ONLY or WRITE action takes a free command: the commands of
//! `run_tests`, `lint_project`, `build_project` and `install_dependencies` come
//! from the project itself (see [`crate::project`]); a command of the caller's
//! choosing is `execute_command`, which is ADMIN.
//!
//! Risks are not here: they belong to the policy rules file, so operators can
//! change them without a release (`config/policy.toml`).

use std::collections::BTreeMap;

use serde_json::Value;

/// What a parameter holds, and so how it is checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// An existing directory: canonicalised and checked against the sandbox.
    Dir,
    /// A file or directory that may not exist yet (an ancestor must):
    /// canonicalised (relative to the step's directory) and checked.
    Path,
    /// Free text (a commit message, a file's content), at most 1 MiB, no NUL.
    Text,
    /// One argument for a tool (a remote, a branch, a tag, a name): letters,
    /// digits and `._-/:@=`, at most 200 bytes, starting with a letter or
    /// digit (so it is never an option, a `+force` refspec, a `:delete` one or
    /// an absolute path).
    Word,
    /// A non-negative integer.
    Int,
    /// `true` or `false`.
    Bool,
    /// Chat messages: a list of `{role, content}` objects.
    Messages,
    /// A command line, a string or a list of strings (`execute_command` only).
    Command,
}

impl Kind {
    fn describe(self) -> &'static str {
        match self {
            Kind::Dir => "an existing directory",
            Kind::Path => "a path",
            Kind::Text => "text without NUL, at most 1 MiB",
            Kind::Word => "one word of letters, digits and ._-/:@= starting with a letter or digit",
            Kind::Int => "a non-negative integer",
            Kind::Bool => "true or false",
            Kind::Messages => "a list of {role, content} objects",
            Kind::Command => "a command (a string or a list of strings)",
        }
    }
}

/// One parameter of an action.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Param {
    pub name: &'static str,
    pub kind: Kind,
    pub required: bool,
}

const fn req(name: &'static str, kind: Kind) -> Param {
    Param { name, kind, required: true }
}

const fn opt(name: &'static str, kind: Kind) -> Param {
    Param { name, kind, required: false }
}

/// Parameters every action accepts: the directory it runs in (the job's when
/// absent) and its own time limit in seconds.
pub const COMMON: &[Param] = &[opt("working_dir", Kind::Dir), opt("timeout", Kind::Int)];

/// One executable action.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Action {
    pub name: &'static str,
    /// Parameters beyond [`COMMON`].
    pub params: &'static [Param],
    /// Timeout the dispatcher gives a step of this action (predecessor §4; 120
    /// for actions it never emitted).
    pub step_timeout_secs: u64,
    /// The executor's per-action cap (predecessor §9.1; 300 when absent).
    pub action_timeout_secs: u64,
    /// The command comes from the project (detected or allow-listed), never
    /// from the plan.
    pub project_command: bool,
}

impl Action {
    /// Every parameter this action accepts.
    pub fn all_params(&self) -> impl Iterator<Item = &'static Param> {
        self.params.iter().chain(COMMON.iter())
    }

    /// The parameter `name`, if the action accepts it.
    pub fn param(&self, name: &str) -> Option<&'static Param> {
        self.all_params().find(|p| p.name == name)
    }
}

const fn a(name: &'static str, params: &'static [Param], step: u64, action: u64) -> Action {
    Action { name, params, step_timeout_secs: step, action_timeout_secs: action, project_command: false }
}

/// An action whose command the project defines (tests, lint, build, install,
/// its dev server).
const fn project(name: &'static str, params: &'static [Param], step: u64, action: u64) -> Action {
    Action { name, params, step_timeout_secs: step, action_timeout_secs: action, project_command: true }
}

/// Every action SKYNET knows, in the predecessor's order (§1.1, then §1.2).
pub const ACTIONS: &[Action] = &[
    a("file_read", &[req("file", Kind::Path)], 120, 300),
    a("list_directory", &[req("directory", Kind::Dir)], 60, 10),
    a("git_status", &[], 90, 30),
    a("ollama_chat", &[req("messages", Kind::Messages), opt("model", Kind::Word)], 120, 300),
    project("run_tests", &[], 300, 600),
    project("lint_project", &[], 180, 180),
    // Starts the project's dev server and waits for it to answer on `port`;
    // it runs until the job ends (see the executor's `devserver`).
    project("start_dev_server", &[req("port", Kind::Int)], 120, 300),
    project("build_project", &[], 600, 300),
    a("file_write", &[req("file", Kind::Path), req("content", Kind::Text), opt("mode", Kind::Word)], 120, 300),
    a("create_directory", &[req("directory", Kind::Path), opt("parents", Kind::Bool)], 120, 300),
    a("git_commit", &[req("message", Kind::Text)], 120, 60),
    a("git_init", &[], 120, 300),
    a("git_add_all", &[], 120, 300),
    project("install_dependencies", &[], 480, 480),
    a("docker_build", &[opt("tag", Kind::Word)], 900, 900),
    a("zip_project", &[], 120, 300),
    a("open_in_vscode", &[req("path", Kind::Path)], 120, 300),
    a("git_push", &[opt("remote", Kind::Word), opt("branch", Kind::Word)], 180, 180),
    a("gh_create_repo", &[req("repo_name", Kind::Word), opt("private", Kind::Bool)], 120, 300),
    a("docker_compose_up", &[], 900, 600),
    a("close_app", &[req("app", Kind::Word)], 120, 300),
    // Provider-level actions of the predecessor (§1.2), now first-class.
    a("git_diff", &[], 90, 300),
    a("git_log", &[opt("limit", Kind::Int)], 90, 300),
    a("git_pull", &[], 180, 180),
    a("execute_command", &[req("command", Kind::Command)], 60, 60),
    a("check_disk_space", &[], 30, 300),
    a("check_memory", &[], 30, 300),
];

/// The whole job's default limit (predecessor §9.1 `total_execution`).
pub const JOB_TIMEOUT_SECS: u64 = 1800;
/// The cap on any one step (predecessor §9.1 `execution_step`).
pub const STEP_TIMEOUT_CAP_SECS: u64 = 600;
/// The most text a `Text` parameter may hold.
pub const MAX_TEXT: usize = 1024 * 1024;

/// Looks an action up by exact (lower-case) name.
pub fn action(name: &str) -> Option<&'static Action> {
    ACTIONS.iter().find(|a| a.name == name)
}

/// Why a step's parameters were refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParamError {
    #[error("action {action} takes no parameter {param:?} (it takes: {accepted})")]
    Unknown { action: &'static str, param: String, accepted: String },
    #[error("action {action}: parameter {param:?} must be {expected}")]
    Kind { action: &'static str, param: &'static str, expected: &'static str },
    #[error("action {action} requires parameter {param:?}")]
    Missing { action: &'static str, param: &'static str },
}

/// Checks `params` against `action`'s declaration: no unknown parameter, each
/// of its kind, every required one present. Directories the dispatcher fills in
/// from the job (`working_dir`, `directory`) may be missing.
pub fn check_params(action: &Action, params: &BTreeMap<String, Value>) -> Result<(), ParamError> {
    for (name, value) in params {
        let Some(p) = action.param(name) else {
            let accepted: Vec<&str> = action.all_params().map(|p| p.name).collect();
            return Err(ParamError::Unknown {
                action: action.name,
                param: name.clone(),
                accepted: accepted.join(", "),
            });
        };
        if !kind_fits(p.kind, value) {
            return Err(ParamError::Kind { action: action.name, param: p.name, expected: p.kind.describe() });
        }
    }
    let fillable = |n: &str| n == "working_dir" || n == "directory";
    match action.all_params().find(|p| p.required && !fillable(p.name) && !params.contains_key(p.name)) {
        Some(p) => Err(ParamError::Missing { action: action.name, param: p.name }),
        None => Ok(()),
    }
}

fn kind_fits(kind: Kind, value: &Value) -> bool {
    let text = |s: &str, max: usize| !s.is_empty() && s.len() <= max && !s.contains('\0');
    match (kind, value) {
        (Kind::Dir | Kind::Path, Value::String(s)) => text(s, 4096),
        (Kind::Text, Value::String(s)) => s.len() <= MAX_TEXT && !s.contains('\0'),
        (Kind::Word, Value::String(s)) => is_word(s),
        (Kind::Int, v) => v.as_u64().is_some(),
        (Kind::Bool, v) => v.is_boolean(),
        (Kind::Messages, Value::Array(items)) => items.iter().all(|m| {
            m.as_object().is_some_and(|o| {
                o.get("role").is_some_and(Value::is_string)
                    && o.get("content").is_some_and(Value::is_string)
                    && o.keys().all(|k| k == "role" || k == "content")
            })
        }),
        (Kind::Command, Value::String(s)) => text(s, 64 * 1024) && shlex::split(s).is_some_and(|w| !w.is_empty()),
        (Kind::Command, Value::Array(items)) => {
            !items.is_empty() && items.iter().all(|i| i.as_str().is_some_and(|s| !s.contains('\0')))
        }
        _ => false,
    }
}

/// Whether `s` is a single, option-free argument (see [`Kind::Word`]).
pub fn is_word(s: &str) -> bool {
    s.len() <= 200
        && s.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
        && s.chars().all(|c| c.is_ascii_alphanumeric() || "._-/:@=".contains(c))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn names_are_unique_lowercase_and_timeouts_positive() {
        for (i, x) in ACTIONS.iter().enumerate() {
            assert_eq!(x.name, x.name.to_ascii_lowercase());
            assert!(x.step_timeout_secs > 0 && x.action_timeout_secs > 0, "{}", x.name);
            assert!(ACTIONS[i + 1..].iter().all(|y| y.name != x.name), "{} twice", x.name);
        }
        assert_eq!(action("git_status").map(|a| a.step_timeout_secs), Some(90));
        assert!(action("shell_exec").is_none());
    }

    #[test]
    fn only_execute_command_takes_a_command() {
        for x in ACTIONS {
            let takes = x.all_params().any(|p| p.kind == Kind::Command);
            assert_eq!(takes, x.name == "execute_command", "{}", x.name);
        }
    }

    #[test]
    fn parameters_are_checked_by_name_and_kind() {
        let p = |v: serde_json::Value| -> BTreeMap<String, Value> {
            v.as_object().map(|m| m.clone().into_iter().collect()).unwrap_or_default()
        };
        let check = |name: &str, v| action(name).map(|a| check_params(a, &p(v)));
        // (action, params, accepted?, text the refusal must contain)
        let cases = [
            ("run_tests", json!({}), true, ""),
            ("run_tests", json!({"working_dir": "/tmp", "timeout": 30}), true, ""),
            ("run_tests", json!({"command": ["sh", "-c", "touch /tmp/x"]}), false, "no parameter \"command\""),
            ("build_project", json!({"command": "make"}), false, "no parameter \"command\""),
            ("lint_project", json!({"args": "x"}), false, "no parameter \"args\""),
            ("git_push", json!({"remote": "--receive-pack=evil"}), false, "\"remote\" must be one word"),
            ("git_push", json!({"remote": "origin", "branch": "feature/x"}), true, ""),
            ("git_push", json!({"branch": "+main"}), false, "one word"),
            ("git_push", json!({"branch": ":main"}), false, "one word"),
            ("git_push", json!({"remote": "/srv/elsewhere"}), false, "one word"),
            ("git_log", json!({"limit": "ten"}), false, "non-negative integer"),
            ("file_read", json!({}), false, "requires parameter \"file\""),
            ("file_read", json!({"file": "a\u{0}b"}), false, "\"file\" must be a path"),
            ("list_directory", json!({}), true, ""),
            ("execute_command", json!({"command": ["sleep", "1"]}), true, ""),
            ("execute_command", json!({"command": ""}), false, "command"),
            ("ollama_chat", json!({"messages": [{"role": "user", "content": "hi"}]}), true, ""),
            ("ollama_chat", json!({"messages": [{"role": "user"}]}), false, "messages"),
            ("git_commit", json!({"message": 42}), false, "\"message\" must be text"),
            ("create_directory", json!({"directory": "a/b", "parents": true}), true, ""),
            ("create_directory", json!({"directory": "a/b", "parents": "yes"}), false, "true or false"),
            ("start_dev_server", json!({}), false, "requires parameter \"port\""),
            ("start_dev_server", json!({"port": 8000, "command": "rm -rf /"}), false, "no parameter \"command\""),
        ];
        for (name, params, ok, want) in cases {
            let got = check(name, params.clone()).expect("known action");
            match got {
                Ok(()) => assert!(ok, "{name} {params} was accepted"),
                Err(e) => {
                    assert!(!ok, "{name} {params} refused: {e}");
                    assert!(e.to_string().contains(want), "{name}: {e}");
                }
            }
        }
    }
}
