//! The action catalog: the names the dispatcher may emit and executors run,
//! with the parameters each requires and the time each may take.
//!
//! Risks are not here: they belong to the policy rules file, so operators can
//! change them without a release (`config/policy.toml`).

/// One executable action.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Action {
    pub name: &'static str,
    /// Parameters a step must carry (§4.1 of the predecessor's protocol).
    pub required: &'static [&'static str],
    /// Timeout the dispatcher gives a step of this action (predecessor §4; 120
    /// for actions it never emitted).
    pub step_timeout_secs: u64,
    /// The executor's per-action cap (predecessor §9.1; 300 when absent).
    pub action_timeout_secs: u64,
}

const fn a(name: &'static str, required: &'static [&'static str], step: u64, action: u64) -> Action {
    Action { name, required, step_timeout_secs: step, action_timeout_secs: action }
}

const WD: &[&str] = &["working_dir"];

/// Every action SKYNET knows, in the predecessor's order (§1.1, then §1.2).
pub const ACTIONS: &[Action] = &[
    a("file_read", &["file"], 120, 300),
    a("list_directory", &["directory"], 60, 10),
    a("git_status", WD, 90, 30),
    a("ollama_chat", &["messages"], 120, 300),
    a("run_tests", WD, 300, 600),
    a("lint_project", WD, 180, 180),
    a("start_dev_server", WD, 120, 300),
    a("build_project", WD, 600, 300),
    a("file_write", &["file", "content"], 120, 300),
    a("create_directory", &["directory"], 120, 300),
    a("git_commit", &["working_dir", "message"], 120, 60),
    a("git_init", WD, 120, 300),
    a("git_add_all", WD, 120, 300),
    a("install_dependencies", WD, 480, 480),
    a("docker_build", WD, 900, 900),
    a("zip_project", WD, 120, 300),
    a("open_in_vscode", &["path"], 120, 300),
    a("git_push", WD, 180, 180),
    a("gh_create_repo", &["working_dir", "repo_name"], 120, 300),
    a("docker_compose_up", WD, 900, 600),
    a("close_app", &["app"], 120, 300),
    // Provider-level actions of the predecessor (§1.2), now first-class.
    a("git_diff", WD, 90, 300),
    a("git_log", WD, 90, 300),
    a("git_pull", WD, 180, 180),
    a("execute_command", &["command"], 60, 60),
    a("check_disk_space", &[], 30, 300),
    a("check_memory", &[], 30, 300),
];

/// The whole job's default limit (predecessor §9.1 `total_execution`).
pub const JOB_TIMEOUT_SECS: u64 = 1800;
/// The cap on any one step (predecessor §9.1 `execution_step`).
pub const STEP_TIMEOUT_CAP_SECS: u64 = 600;

/// Looks an action up by exact (lower-case) name.
pub fn action(name: &str) -> Option<&'static Action> {
    ACTIONS.iter().find(|a| a.name == name)
}

#[cfg(test)]
mod tests {
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
}
