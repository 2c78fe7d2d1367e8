//! Plan-step text → catalog action, by whole words.
//!
//! Fixes the predecessor's substring matching (§4, §19.10): "digit" does not
//! contain the *word* git; "Install dependencies" maps to install_dependencies;
//! and a step that matches nothing maps to nothing — the caller fails it by name
//! instead of silently running `list_directory`.

/// The action for a step with this title and description, if any rule matches.
/// Rules are tried in order; the first match wins.
pub fn map_step(title: &str, description: &str) -> Option<&'static str> {
    let text = format!("{title} {description}").to_lowercase();
    // Words only: a token with `.`, `/`, `-` and the like inside is a name (a
    // file, a path, a host, an option), never a keyword — "llm-notes.txt"
    // does not ask the model anything.
    let words: Vec<&str> = text
        .split_whitespace()
        .map(|t| t.trim_matches(|c: char| !(c.is_ascii_alphanumeric() || c == '_')))
        .filter(|t| !t.is_empty() && t.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'))
        .collect();
    let has = |w: &str| words.contains(&w);
    let any = |ws: &[&str]| ws.iter().any(|w| has(w));
    let rules: &[(bool, &'static str)] = &[
        // First: what the model is asked may mention any other action's words.
        (any(&["ollama", "llm", "chatgpt"]) || (has("ask") && any(&["model", "ai", "assistant"])), "ollama_chat"),
        (any(&["github", "gh"]) && any(&["repo", "repository"]), "gh_create_repo"),
        (any(&["vscode", "vs_code"]) || (has("vs") && has("code")), "open_in_vscode"),
        (any(&["close", "quit"]), "close_app"),
        (any(&["zip", "archive"]), "zip_project"),
        (any(&["dev", "development"]) && any(&["server", "servers"]), "start_dev_server"),
        (
            (has("git") && has("init")) || (any(&["initialise", "initialize"]) && any(&["git", "repository", "repo"])),
            "git_init",
        ),
        (has("stage") || (has("git") && has("add")), "git_add_all"),
        (has("commit"), "git_commit"),
        (has("mkdir") || (any(&["create", "make"]) && any(&["directory", "folder", "dir"])), "create_directory"),
        (has("write") || (any(&["create", "make"]) && has("file")), "file_write"),
        (has("git") && has("status"), "git_status"),
        (has("push"), "git_push"),
        (has("git") && any(&["diff", "diffs", "changes"]), "git_diff"),
        (has("git") && any(&["log", "history", "commits"]), "git_log"),
        (has("git") && any(&["pull", "fetch", "update"]), "git_pull"),
        (any(&["deploy", "deployment", "production"]), "docker_compose_up"),
        (any(&["pytest", "unittest", "test", "tests", "testing"]), "run_tests"),
        (any(&["lint", "linter", "linting", "ruff", "clippy"]), "lint_project"),
        (
            has("install") && any(&["dependency", "dependencies", "deps", "package", "packages", "requirements"]),
            "install_dependencies",
        ),
        (has("docker") && has("build"), "docker_build"),
        (any(&["build", "compile"]), "build_project"),
        (any(&["disk", "df"]), "check_disk_space"),
        (any(&["memory", "ram"]) && !has("git"), "check_memory"),
        (any(&["read", "cat", "show", "print", "view"]) && any(&["file", "readme", "contents"]), "file_read"),
        (any(&["list", "ls"]) || (has("files") && !any(&["read", "write"])), "list_directory"),
    ];
    rules.iter().find(|(hit, _)| *hit).map(|(_, action)| *action)
}

#[cfg(test)]
mod tests {
    use super::map_step;

    #[test]
    fn table_of_step_texts() {
        let cases: &[(&str, &str, Option<&str>)] = &[
            // The predecessor's own scenario (§18.9).
            ("Check git status", "Run git status", Some("git_status")),
            ("Run tests", "Execute pytest", Some("run_tests")),
            ("Build app", "Build the project", Some("build_project")),
            ("Deploy to production", "", Some("docker_compose_up")),
            ("Push", "git push origin main", Some("git_push")),
            ("Lint", "run ruff", Some("lint_project")),
            ("Docker image", "docker build -t app .", Some("docker_build")),
            ("Show changes", "git diff", Some("git_diff")),
            ("Recent history", "git log", Some("git_log")),
            ("Update", "git pull", Some("git_pull")),
            ("List files", "", Some("list_directory")),
            ("Read the README file", "", Some("file_read")),
            ("Check disk space", "", Some("check_disk_space")),
            ("Check memory usage", "", Some("check_memory")),
            // Quirks fixed.
            ("Install dependencies", "", Some("install_dependencies")),
            ("Check digit status", "", None),
            ("Latest results", "attestation of contest", None),
            // Never guess.
            ("Do something unusual", "Perform an uncommon workflow", None),
            // The writing actions (issue 12).
            ("Create file", "Create output file", Some("file_write")),
            ("Write notes", "", Some("file_write")),
            ("Create a directory named build", "", Some("create_directory")),
            ("Initialise a git repository", "", Some("git_init")),
            ("Stage all changes", "", Some("git_add_all")),
            ("Commit", "git commit -m wip", Some("git_commit")),
            ("Show recent commits", "git log", Some("git_log")),
            ("Zip the project", "", Some("zip_project")),
            ("Start the dev server on port 8000", "", Some("start_dev_server")),
            ("Ask the model to summarise the test results", "", Some("ollama_chat")),
            ("Create a GitHub repo named tools", "", Some("gh_create_repo")),
            ("Open the project in VS Code", "", Some("open_in_vscode")),
            ("Close firefox", "", Some("close_app")),
            ("Push to origin main", "", Some("git_push")),
            // A server that is not the dev server is not guessed.
            ("Restart the web server", "", None),
            // Names are not keywords.
            ("Write notes", "to llm-notes.txt", Some("file_write")),
            ("Read", "the file close-button.md", Some("file_read")),
        ];
        for (title, desc, want) in cases {
            assert_eq!(map_step(title, desc), *want, "{title:?} / {desc:?}");
        }
    }
}
