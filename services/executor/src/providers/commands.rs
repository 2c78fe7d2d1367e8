//! Catalog action → the command that performs it, as an argv (never a shell
//! string). Shared by the providers that run commands (local, ssh, docker).
//!
//! The predecessor's mappings (§1.1–1.2) are kept where they were right, and
//! fixed where they were not: `list_directory` lists the directory it was given
//! (the local provider ignored it), `execute_command` is split like a shell
//! would split it but never run by one.

use std::collections::BTreeMap;

use serde_json::Value;
use skynet_contract::plan::PROJECT_COMMAND;

/// Why an action has no command.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CommandError {
    #[error("action {0} is not supported by this provider")]
    Unsupported(String),
    #[error("action {action}: parameter {param} is missing or invalid")]
    BadParam { action: String, param: &'static str },
}

/// Actions [`argv`] can map.
pub const SUPPORTED: &[&str] = &[
    "git_status",
    "git_diff",
    "git_log",
    "git_pull",
    "git_push",
    "git_commit",
    "git_init",
    "git_add_all",
    "list_directory",
    "file_read",
    "run_tests",
    "lint_project",
    "build_project",
    "install_dependencies",
    "docker_build",
    "docker_compose_up",
    "check_disk_space",
    "check_memory",
    "execute_command",
];

/// Command actions only the local provider offers: they act on the host a
/// person works at (its GitHub login, its desktop), not on a remote machine or
/// in a container.
pub const HOST_ONLY: &[&str] = &["gh_create_repo", "open_in_vscode", "close_app"];

/// The program an action runs, when it is always the same one (the project
/// commands and `execute_command` vary). A host without it cannot run the
/// action, and its executor must not say it can.
pub fn program(action: &str) -> Option<&'static str> {
    match action {
        a if a.starts_with("git_") => Some("git"),
        "list_directory" => Some("ls"),
        "file_read" => Some("cat"),
        "docker_build" | "docker_compose_up" => Some("docker"),
        "check_disk_space" => Some("df"),
        "check_memory" => Some("free"),
        "gh_create_repo" => Some("gh"),
        "open_in_vscode" => Some("code"),
        "close_app" => Some("wmctrl"),
        _ => None,
    }
}

/// Whether the action needs a graphical session (a window to open or close):
/// a headless host cannot run it, whatever programs it has.
pub fn needs_desktop(action: &str) -> bool {
    matches!(action, "open_in_vscode" | "close_app")
}

/// Variables a desktop action needs to reach the session.
pub const DESKTOP_ENV: &[&str] = &["DISPLAY", "WAYLAND_DISPLAY", "XDG_RUNTIME_DIR", "DBUS_SESSION_BUS_ADDRESS"];

/// Whether this process runs inside a graphical session.
pub fn has_desktop() -> bool {
    ["DISPLAY", "WAYLAND_DISPLAY"].iter().any(|v| std::env::var_os(v).is_some_and(|x| !x.is_empty()))
}

/// Whether `program` is an executable file in a directory of `PATH`.
pub fn on_path(program: &str) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::env::var_os("PATH").is_some_and(|path| {
        std::env::split_paths(&path).any(|dir| {
            std::fs::metadata(dir.join(program)).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
    })
}

/// The actions of `actions` whose program `found` says this host has, and
/// that need no graphical session unless `desktop`.
pub fn runnable<'a>(actions: &[&'a str], found: impl Fn(&str) -> bool, desktop: bool) -> Vec<&'a str> {
    actions.iter().copied().filter(|a| program(a).is_none_or(&found) && (desktop || !needs_desktop(a))).collect()
}

/// A git remote's name: letters, digits and `._-`, starting with a letter or digit.
fn is_remote_name(s: &str) -> bool {
    s.len() <= 100
        && s.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
        && s.chars().all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
}

/// The argv for `action` with `params`.
pub fn argv(action: &str, params: &BTreeMap<String, Value>) -> Result<Vec<String>, CommandError> {
    let s = |k: &str| params.get(k).and_then(Value::as_str).map(str::to_owned);
    let words = |k: &str, default: &str| -> Result<Vec<String>, CommandError> {
        match params.get(k) {
            None => Ok(split(default)),
            Some(Value::String(c)) if !c.trim().is_empty() => {
                shlex::split(c).ok_or(CommandError::BadParam { action: action.into(), param: "command" })
            }
            Some(Value::Array(a)) if !a.is_empty() => a
                .iter()
                .map(|v| v.as_str().map(str::to_owned))
                .collect::<Option<Vec<_>>>()
                .ok_or(CommandError::BadParam { action: action.into(), param: "command" }),
            _ => Err(CommandError::BadParam { action: action.into(), param: "command" }),
        }
    };
    let v = |parts: &[&str]| parts.iter().map(|p| (*p).to_owned()).collect::<Vec<_>>();
    Ok(match action {
        "git_status" => v(&["git", "status"]),
        "git_diff" => v(&["git", "diff"]),
        "git_log" => {
            let n = params.get("limit").and_then(Value::as_u64).unwrap_or(10);
            vec!["git".into(), "log".into(), "--oneline".into(), "-n".into(), n.to_string()]
        }
        "git_pull" => v(&["git", "pull"]),
        "git_push" => {
            // A remote is a configured remote's name — never a URL or a path,
            // which would push into any repository the host can reach — and a
            // branch one word; a bad one is refused, never dropped (the branch
            // would become the remote).
            let bad = |param| CommandError::BadParam { action: action.into(), param };
            let remote = s("remote");
            if remote.as_deref().is_some_and(|r| !is_remote_name(r)) {
                return Err(bad("remote"));
            }
            let branch = s("branch");
            if branch.as_deref().is_some_and(|b| !skynet_rules::catalog::is_word(b))
                || (branch.is_some() && remote.is_none())
            {
                return Err(bad("branch"));
            }
            let mut a = v(&["git", "push"]);
            a.extend(remote);
            a.extend(branch);
            a
        }
        "git_commit" => {
            let msg = s("message").ok_or(CommandError::BadParam { action: action.into(), param: "message" })?;
            vec!["git".into(), "commit".into(), "-m".into(), msg]
        }
        "git_init" => v(&["git", "init"]),
        "git_add_all" => v(&["git", "add", "--all"]),
        "list_directory" => {
            vec!["ls".into(), "-la".into(), "--".into(), s("directory").unwrap_or_else(|| ".".into())]
        }
        "file_read" => {
            // Remote providers only: the local provider opens the file itself.
            let f = s("file").ok_or(CommandError::BadParam { action: action.into(), param: "file" })?;
            vec!["cat".into(), "--".into(), f]
        }
        // The project's own command, resolved by the dispatcher from the
        // policy's allow-list or the project's files; never from the plan.
        "run_tests" | "lint_project" | "build_project" | "install_dependencies" | "start_dev_server" => {
            match params.get(PROJECT_COMMAND) {
                Some(Value::Array(a)) if !a.is_empty() => a
                    .iter()
                    .map(|v| v.as_str().map(str::to_owned))
                    .collect::<Option<Vec<_>>>()
                    .ok_or(CommandError::BadParam { action: action.into(), param: PROJECT_COMMAND })?,
                _ => return Err(CommandError::BadParam { action: action.into(), param: PROJECT_COMMAND }),
            }
        }
        "docker_build" => {
            // Images SKYNET builds live under `skynet/`, so a build can never
            // replace an image other steps run (the docker provider's own).
            let tag = s("tag").filter(|w| skynet_rules::catalog::is_word(w)).unwrap_or_else(|| "myapp".into());
            let tag = format!("skynet/{}", tag.trim_start_matches("skynet/"));
            vec!["docker".into(), "build".into(), "-t".into(), tag, ".".into()]
        }
        "docker_compose_up" => v(&["docker", "compose", "up", "-d"]),
        "gh_create_repo" => {
            let name = s("repo_name")
                .filter(|w| skynet_rules::catalog::is_word(w))
                .ok_or(CommandError::BadParam { action: action.into(), param: "repo_name" })?;
            let public = params.get("private").and_then(Value::as_bool) == Some(false);
            vec![
                "gh".into(),
                "repo".into(),
                "create".into(),
                name,
                (if public { "--public" } else { "--private" }).into(),
            ]
        }
        "open_in_vscode" => {
            let path = s("path").ok_or(CommandError::BadParam { action: action.into(), param: "path" })?;
            vec!["code".into(), "--".into(), path]
        }
        // Closes a window whose class is exactly that (`-F`: no substring
        // match), politely — the window manager asks it to close — never a
        // process by a name pattern.
        "close_app" => {
            let app = s("app")
                .filter(|w| skynet_rules::catalog::is_word(w))
                .ok_or(CommandError::BadParam { action: action.into(), param: "app" })?;
            vec!["wmctrl".into(), "-F".into(), "-x".into(), "-c".into(), app]
        }
        "check_disk_space" => v(&["df", "-h"]),
        "check_memory" => v(&["free", "-h"]),
        "execute_command" => match params.get("command") {
            None => return Err(CommandError::BadParam { action: action.into(), param: "command" }),
            Some(_) => words("command", "")?,
        },
        other => return Err(CommandError::Unsupported(other.into())),
    })
}

fn split(s: &str) -> Vec<String> {
    shlex::split(s).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_action_whose_program_is_missing_is_not_offered() {
        let without_git = runnable(SUPPORTED, |p| p != "git", false);
        assert!(!without_git.iter().any(|a| a.starts_with("git_")), "{without_git:?}");
        assert!(without_git.contains(&"check_disk_space") && without_git.contains(&"run_tests"));
        assert_eq!(runnable(SUPPORTED, |_| true, false), SUPPORTED);
        // Without gh, no gh_create_repo; without a desktop, no windows to open
        // or close, whatever programs there are.
        assert_eq!(runnable(HOST_ONLY, |p| p != "gh", true), ["open_in_vscode", "close_app"]);
        assert_eq!(runnable(HOST_ONLY, |_| true, false), ["gh_create_repo"]);
        // This machine has git and ls (the tests run them), and no such program.
        assert!(on_path("git") && on_path("ls"));
        assert!(!on_path("skynet-no-such-program"));
    }

    fn p(pairs: &[(&str, Value)]) -> BTreeMap<String, Value> {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), v.clone())).collect()
    }

    /// (action, params, expected argv or refusal)
    type Case = (&'static str, BTreeMap<String, Value>, Result<Vec<&'static str>, ()>);

    #[test]
    fn mappings() {
        let cases: Vec<Case> = vec![
            ("git_status", p(&[]), Ok(vec!["git", "status"])),
            ("git_diff", p(&[]), Ok(vec!["git", "diff"])),
            ("git_log", p(&[]), Ok(vec!["git", "log", "--oneline", "-n", "10"])),
            ("list_directory", p(&[("directory", "/tmp".into())]), Ok(vec!["ls", "-la", "--", "/tmp"])),
            ("list_directory", p(&[]), Ok(vec!["ls", "-la", "--", "."])),
            // No command from the plan: only the dispatcher's project command.
            ("run_tests", p(&[]), Err(())),
            ("run_tests", p(&[("command", serde_json::json!(["sh", "-c", "touch /tmp/x"]))]), Err(())),
            (
                "run_tests",
                p(&[(PROJECT_COMMAND, serde_json::json!(["cargo", "test", "--workspace"]))]),
                Ok(vec!["cargo", "test", "--workspace"]),
            ),
            ("git_push", p(&[("remote", "--receive-pack=x".into())]), Err(())),
            ("git_push", p(&[("remote", "file:///srv/repo".into())]), Err(())),
            ("git_push", p(&[("remote", "a/../../repo".into())]), Err(())),
            ("git_push", p(&[("branch", "main".into())]), Err(())),
            (
                "git_push",
                p(&[("remote", "origin".into()), ("branch", "feature/x".into())]),
                Ok(vec!["git", "push", "origin", "feature/x"]),
            ),
            (
                "execute_command",
                p(&[("command", "echo 'Hello from SKYNET'".into())]),
                Ok(vec!["echo", "Hello from SKYNET"]),
            ),
            ("execute_command", p(&[("command", serde_json::json!(["sleep", "1"]))]), Ok(vec!["sleep", "1"])),
            ("execute_command", p(&[]), Err(())),
            ("execute_command", p(&[("command", "".into())]), Err(())),
            ("docker_build", p(&[]), Ok(vec!["docker", "build", "-t", "skynet/myapp", "."])),
            (
                "docker_build",
                p(&[("tag", "ubuntu:22.04".into())]),
                Ok(vec!["docker", "build", "-t", "skynet/ubuntu:22.04", "."]),
            ),
            ("check_disk_space", p(&[]), Ok(vec!["df", "-h"])),
            ("file_read", p(&[("file", "README.md".into())]), Ok(vec!["cat", "--", "README.md"])),
            ("close_app", p(&[]), Err(())),
            ("close_app", p(&[("app", "firefox".into())]), Ok(vec!["wmctrl", "-F", "-x", "-c", "firefox"])),
            ("close_app", p(&[("app", "-a".into())]), Err(())),
            (
                "gh_create_repo",
                p(&[("repo_name", "tools".into())]),
                Ok(vec!["gh", "repo", "create", "tools", "--private"]),
            ),
            (
                "gh_create_repo",
                p(&[("repo_name", "site".into()), ("private", false.into())]),
                Ok(vec!["gh", "repo", "create", "site", "--public"]),
            ),
            ("open_in_vscode", p(&[("path", "/p/src".into())]), Ok(vec!["code", "--", "/p/src"])),
            ("start_dev_server", p(&[("port", 8000.into())]), Err(())),
        ];
        for (action, params, want) in cases {
            let got = argv(action, &params).map_err(|_| ());
            let want = want.map(|w| w.into_iter().map(str::to_owned).collect::<Vec<_>>());
            assert_eq!(got, want, "{action} {params:?}");
        }
    }
}
