//! The rule-based planner: offline, deterministic, and conservative. It splits
//! the intent into clauses ("check git status, run the tests and build"), maps
//! each clause to a catalog action by whole words, and refuses to plan when any
//! clause means nothing it knows — a plan that silently drops part of what was
//! asked is worse than no plan.

use std::collections::BTreeMap;

use skynet_contract::{Plan, PlanStep};
use skynet_rules::PolicyRules;
use skynet_rules::mapping::map_step;

/// Plans `intent`. `working_dir` is the request's directory, if it named one; a
/// path written in the intent ("in ~/proj") is used otherwise.
pub fn plan(intent: &str, working_dir: Option<&str>, rules: &PolicyRules) -> Result<Plan, String> {
    // Quoted text is content: a path inside it is not the job's directory.
    let dir = working_dir.map(str::to_owned).or_else(|| path_in(&unquoted(intent)));
    let clauses = clauses(intent);
    if clauses.is_empty() {
        return Err("the intent is empty".into());
    }
    let mut steps = Vec::new();
    let mut unknown = Vec::new();
    for clause in &clauses {
        // Quoted text is content, never a command word: "write 'run the tests'
        // to notes.txt" writes a file, it runs no tests.
        match map_step(&unquoted(clause), "") {
            Some(action) => steps.push(step(action, clause, dir.as_deref(), rules)?),
            None => unknown.push(format!("{clause:?}")),
        }
    }
    if !unknown.is_empty() {
        return Err(format!(
            "the rule planner understands no action in {}; it knows git status/diff/log/pull/init/add/commit, tests, \
             lint, build, install dependencies, docker build, deploy, list files, read or write a file, create a \
             directory, zip the project, start the dev server, ask the model, create a GitHub repo, open in VS Code, \
             close an app, disk and memory checks",
            unknown.join(", ")
        ));
    }
    let summary = steps.iter().map(|s| s.title.to_lowercase()).collect::<Vec<_>>().join(", then ");
    Ok(Plan { summary: capitalise(&summary), steps, artifacts: Vec::new() })
}

fn step(action: &'static str, clause: &str, dir: Option<&str>, rules: &PolicyRules) -> Result<PlanStep, String> {
    let (title, minutes) = match action {
        "git_status" => ("Check git status", 1),
        "git_diff" => ("Show the git diff", 1),
        "git_log" => ("Show recent git history", 1),
        "git_pull" => ("Pull from the remote", 2),
        "git_push" => ("Push to the remote", 2),
        "run_tests" => ("Run the tests", 3),
        "lint_project" => ("Lint the project", 2),
        "build_project" => ("Build the project", 5),
        "install_dependencies" => ("Install dependencies", 5),
        "docker_build" => ("Build the Docker image", 10),
        "docker_compose_up" => ("Deploy with docker compose", 10),
        "list_directory" => ("List files", 1),
        "file_read" => ("Read a file", 1),
        "check_disk_space" => ("Check disk space", 1),
        "check_memory" => ("Check memory", 1),
        "file_write" => ("Write a file", 1),
        "create_directory" => ("Create a directory", 1),
        "git_init" => ("Initialise a git repository", 1),
        "git_add_all" => ("Stage all changes", 1),
        "git_commit" => ("Commit", 1),
        "zip_project" => ("Archive the project", 1),
        "start_dev_server" => ("Start the dev server", 2),
        "ollama_chat" => ("Ask the model", 1),
        "gh_create_repo" => ("Create a GitHub repository", 1),
        "open_in_vscode" => ("Open in VS Code", 1),
        "close_app" => ("Close an application", 1),
        _ => (action, 5),
    };
    let mut params = BTreeMap::new();
    if let Some(d) = dir {
        let key = if action == "list_directory" { "directory" } else { "working_dir" };
        params.insert(key.to_owned(), serde_json::Value::String(d.to_owned()));
    }
    if action == "file_read"
        && let Some(file) = clause.split_whitespace().find(|w| w.contains('.') || w.contains('/'))
    {
        params.insert("file".to_owned(), serde_json::Value::String(file.trim_matches(['"', '\'']).to_owned()));
    }
    // The writing actions take their parameters from the clause, or the clause
    // is refused: never a guessed file name or message.
    let refuse = |what: &str| format!("{clause:?}: {what}");
    let text = |v: String| serde_json::Value::String(v);
    match action {
        "file_write" => {
            let file = name_after(clause, &["to", "into", "named", "called"]).ok_or_else(|| {
                refuse("name the file (\"write 'text' to notes.txt\", \"create a file named notes.txt\")")
            })?;
            params.insert("file".into(), text(file));
            params.insert("content".into(), text(quoted(clause).unwrap_or_default()));
        }
        "create_directory" => {
            let name = name_after(clause, &["named", "called", "directory", "folder", "mkdir"])
                .ok_or_else(|| refuse("name the directory (\"create a directory named build\")"))?;
            // A nested name asks for its parents too ("create directory src/a/b").
            if name.trim_end_matches('/').contains('/') {
                params.insert("parents".into(), serde_json::Value::Bool(true));
            }
            params.insert("directory".into(), text(name));
        }
        "git_commit" => {
            let message =
                quoted(clause).ok_or_else(|| refuse("give the message in quotes (\"commit with message 'wip'\")"))?;
            params.insert("message".into(), text(message));
        }
        "git_push" => {
            // "push to origin main": a remote, then maybe a branch; both single words.
            let bare = unquoted(clause);
            let words: Vec<&str> = bare.split_whitespace().collect();
            let how = "name the remote and branch as plain words (\"push to origin main\")";
            let filler = ["git", "push", "the", "my", "changes", "commits", "it", "them", "all", "please"];
            match words.iter().position(|w| w.eq_ignore_ascii_case("to")) {
                Some(at) => {
                    if words[..at].iter().any(|w| !filler.contains(&w.to_lowercase().as_str())) {
                        return Err(refuse(how));
                    }
                    let named: Vec<&str> = words[at + 1..].iter().copied().filter(|w| *w != "the").collect();
                    if named.is_empty() || named.len() > 2 || !named.iter().all(|w| skynet_rules::catalog::is_word(w)) {
                        return Err(refuse(how));
                    }
                    for (key, word) in ["remote", "branch"].iter().zip(named) {
                        params.insert((*key).into(), text(word.to_owned()));
                    }
                }
                // Every other word must be filler: "push origin feature-x"
                // without "to" is refused, never a bare push to wherever.
                None if words.iter().all(|w| filler.contains(&w.to_lowercase().as_str())) => {}
                None => return Err(refuse(how)),
            }
        }
        "start_dev_server" => {
            let port = name_after(clause, &["port"])
                .and_then(|p| p.parse::<u16>().ok())
                .filter(|p| *p > 0)
                .ok_or_else(|| refuse("name the port it listens on (\"start the dev server on port 8000\")"))?;
            params.insert("port".into(), serde_json::Value::from(port));
        }
        "ollama_chat" => {
            // The question: quoted, else everything after "to" ("ask the model to …").
            let bare = unquoted(clause);
            let after_to = bare.split_once(" to ").map(|(_, rest)| rest.trim().to_owned()).filter(|r| !r.is_empty());
            let question = quoted(clause)
                .or(after_to)
                .ok_or_else(|| refuse("say what to ask (\"ask the model to summarise the README\")"))?;
            params.insert("messages".into(), serde_json::json!([{"role": "user", "content": question}]));
        }
        "gh_create_repo" => {
            let name = name_after(clause, &["named", "called"])
                .filter(|n| skynet_rules::catalog::is_word(n))
                .ok_or_else(|| refuse("name the repository (\"create a GitHub repo named tools\")"))?;
            // Public only when plainly asked for; "not public" or "public and
            // private" is refused, not guessed (a repository named "public" is
            // just its name).
            let bare = unquoted(clause).to_lowercase();
            let words: Vec<&str> = bare.split_whitespace().collect();
            let count = |w: &str| words.iter().filter(|x| **x == w).count();
            let negated = words.iter().any(|w| ["not", "never", "no", "don't", "isn't"].contains(w));
            let public = count("public") - usize::from(name == "public");
            if (public > 0 && (negated || count("private") > 0)) || public > 1 {
                return Err(refuse("say plainly whether the repository is public or private"));
            }
            params.insert("private".into(), serde_json::Value::Bool(public == 0));
            params.insert("repo_name".into(), text(name));
        }
        "open_in_vscode" => {
            // "open src/main.rs in vscode"; "open the project in VS Code" opens its directory.
            let path = name_after(clause, &["open"]).filter(|p| p.contains(['.', '/'])).unwrap_or_else(|| ".".into());
            params.insert("path".into(), text(path));
        }
        "close_app" => {
            let app = name_after(clause, &["close", "quit", "app", "application"])
                .filter(|a| skynet_rules::catalog::is_word(a) && !["app", "application"].contains(&a.as_str()))
                .ok_or_else(|| refuse("name the application (\"close firefox\")"))?;
            params.insert("app".into(), text(app));
        }
        _ => {}
    }
    Ok(PlanStep {
        title: title.to_owned(),
        description: clause.to_owned(),
        action: Some(action.to_owned()),
        params,
        risk: rules.classify(action),
        estimated_minutes: minutes,
        continue_on_error: false,
    })
}

/// The first quoted text ('…' or "…") in the clause.
fn quoted(clause: &str) -> Option<String> {
    let start = clause.find(['\'', '"'])?;
    let q = clause[start..].chars().next()?;
    let rest = &clause[start + 1..];
    rest.find(q).map(|end| rest[..end].to_owned())
}

/// The clause without its quoted parts.
fn unquoted(clause: &str) -> String {
    let mut out = String::new();
    let mut quote: Option<char> = None;
    for c in clause.chars() {
        match quote {
            Some(q) if c == q => quote = None,
            Some(_) => {}
            None if c == '\'' || c == '"' => quote = Some(c),
            None => out.push(c),
        }
    }
    out
}

/// The word right after one of `markers`, outside quotes, if it is a name
/// (no quote, not a filler word).
fn name_after(clause: &str, markers: &[&str]) -> Option<String> {
    let bare = unquoted(clause);
    let words: Vec<&str> = bare.split_whitespace().collect();
    words.windows(2).find_map(|w| {
        let name = w[1].trim_end_matches([',', ';', '.']).trim_matches(['\'', '"']);
        let filler = ["a", "an", "the", "named", "called", "file", "directory", "folder"];
        (markers.iter().any(|m| w[0].eq_ignore_ascii_case(m)) && !name.is_empty() && !filler.contains(&name))
            .then(|| name.to_owned())
    })
}

/// Splits on `,`, `;`, `then`, `and` (whole words), dropping filler words.
fn clauses(intent: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current: Vec<&str> = Vec::new();
    // Inside quotes nothing splits and no word is filler: it is content.
    let mut quote: Option<char> = None;
    for raw in intent.split_whitespace() {
        let opens = quote.is_none().then(|| raw.chars().next().filter(|c| *c == '\'' || *c == '"')).flatten();
        if let Some(q) = quote.or(opens) {
            let closes = raw.len() > 1 && raw.trim_end_matches([',', ';', '.']).ends_with(q);
            let closes = closes || (quote.is_some() && raw.trim_end_matches([',', ';', '.']).ends_with(q));
            current.push(raw);
            quote = if closes { None } else { Some(q) };
            if closes && (raw.ends_with(',') || raw.ends_with(';')) {
                flush(&mut current, &mut out);
            }
            continue;
        }
        let word = raw.trim_end_matches([',', ';', '.']);
        let ends_clause = raw.ends_with(',') || raw.ends_with(';');
        match word.to_lowercase().as_str() {
            "and" | "then" | "&&" => flush(&mut current, &mut out),
            "please" | "also" | "finally" | "first" | "afterwards" => {}
            _ if !word.is_empty() => current.push(word),
            _ => {}
        }
        if ends_clause {
            flush(&mut current, &mut out);
        }
    }
    flush(&mut current, &mut out);
    out
}

fn flush(current: &mut Vec<&str>, out: &mut Vec<String>) {
    if !current.is_empty() {
        out.push(current.join(" "));
        current.clear();
    }
}

/// A directory named in the intent: the word after "in" that looks like a path.
fn path_in(intent: &str) -> Option<String> {
    let words: Vec<&str> = intent.split_whitespace().collect();
    words.windows(2).find_map(|w| {
        let candidate = w[1].trim_end_matches([',', ';', '.']);
        (w[0].eq_ignore_ascii_case("in") && (candidate.starts_with(['/', '~']) || candidate.starts_with("./")))
            .then(|| candidate.to_owned())
    })
}

fn capitalise(s: &str) -> String {
    let mut c = s.chars();
    c.next().map(|f| f.to_uppercase().collect::<String>() + c.as_str()).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use skynet_contract::Risk;

    fn actions(intent: &str) -> Result<Vec<String>, String> {
        plan(intent, None, &PolicyRules::defaults()).map(|p| p.steps.into_iter().filter_map(|s| s.action).collect())
    }

    #[test]
    fn every_intent_the_predecessor_could_map() {
        let cases: &[(&str, &[&str])] = &[
            ("check git status", &["git_status"]),
            ("show the git diff", &["git_diff"]),
            ("show the git log", &["git_log"]),
            ("git pull", &["git_pull"]),
            ("run the tests", &["run_tests"]),
            ("lint the code", &["lint_project"]),
            ("build the project", &["build_project"]),
            ("install dependencies", &["install_dependencies"]),
            ("docker build the image", &["docker_build"]),
            ("deploy to production", &["docker_compose_up"]),
            ("list files", &["list_directory"]),
            ("read the file README.md", &["file_read"]),
            ("check disk space", &["check_disk_space"]),
            ("check memory", &["check_memory"]),
            ("check git status, run the tests and build", &["git_status", "run_tests", "build_project"]),
            ("Please check git status in ~/proj and then run the tests", &["git_status", "run_tests"]),
        ];
        for (intent, want) in cases {
            let want: Vec<String> = want.iter().map(|s| s.to_string()).collect();
            assert_eq!(actions(intent), Ok(want), "{intent}");
        }
    }

    #[test]
    fn the_writing_actions_take_their_parameters_from_the_intent() {
        let rules = PolicyRules::defaults();
        let one = |intent: &str| {
            let p = plan(intent, None, &rules).unwrap_or_else(|e| panic!("{intent}: {e}"));
            let s = p.steps.into_iter().next().expect("a step");
            (s.action.unwrap_or_default(), serde_json::Value::Object(s.params.into_iter().collect()))
        };
        assert_eq!(
            one("write 'hello and bye, then more' to notes.txt"),
            ("file_write".into(), serde_json::json!({"file": "notes.txt", "content": "hello and bye, then more"}))
        );
        assert_eq!(
            one("create a file named todo.md"),
            ("file_write".into(), serde_json::json!({"file": "todo.md", "content": ""}))
        );
        assert_eq!(
            one("create a directory named build"),
            ("create_directory".into(), serde_json::json!({"directory": "build"}))
        );
        assert_eq!(
            one("commit my changes with message 'fix typo'"),
            ("git_commit".into(), serde_json::json!({"message": "fix typo"}))
        );
        // Quoted words are content, never actions.
        assert_eq!(actions("write 'run the tests and deploy' to notes.txt"), Ok(vec!["file_write".to_owned()]));
        assert_eq!(
            actions("initialise a git repository and stage all changes, then commit with message \"first\""),
            Ok(vec!["git_init".to_owned(), "git_add_all".to_owned(), "git_commit".to_owned()])
        );
        let p = plan("write 'x' to notes.txt", None, &rules).expect("plan");
        assert_eq!(p.steps[0].risk, Risk::Write, "writing needs an approver");
    }

    #[test]
    fn every_other_catalog_action_is_planned_with_its_parameters() {
        let rules = PolicyRules::defaults();
        let one = |intent: &str| {
            let p = plan(intent, None, &rules).unwrap_or_else(|e| panic!("{intent}: {e}"));
            assert_eq!(p.steps.len(), 1, "{intent}");
            let s = p.steps.into_iter().next().expect("a step");
            (s.action.unwrap_or_default(), serde_json::Value::Object(s.params.into_iter().collect()))
        };
        let cases = [
            ("zip the project", "zip_project", serde_json::json!({})),
            ("start the dev server on port 8000", "start_dev_server", serde_json::json!({"port": 8000})),
            (
                "ask the model 'summarise the tests and the build'",
                "ollama_chat",
                serde_json::json!({"messages": [{"role": "user", "content": "summarise the tests and the build"}]}),
            ),
            (
                "ask the model to summarise the README",
                "ollama_chat",
                serde_json::json!({"messages": [{"role": "user", "content": "summarise the README"}]}),
            ),
            (
                "create a github repo named tools",
                "gh_create_repo",
                serde_json::json!({"repo_name": "tools", "private": true}),
            ),
            (
                "create a public github repository called site",
                "gh_create_repo",
                serde_json::json!({"repo_name": "site", "private": false}),
            ),
            ("open src/main.rs in vscode", "open_in_vscode", serde_json::json!({"path": "src/main.rs"})),
            ("open the project in VS Code", "open_in_vscode", serde_json::json!({"path": "."})),
            ("close firefox", "close_app", serde_json::json!({"app": "firefox"})),
            ("push to origin main", "git_push", serde_json::json!({"remote": "origin", "branch": "main"})),
            ("git push", "git_push", serde_json::json!({})),
            ("push my changes to origin", "git_push", serde_json::json!({"remote": "origin"})),
            (
                "create a github repo named public",
                "gh_create_repo",
                serde_json::json!({"repo_name": "public", "private": true}),
            ),
            (
                "create a directory named out/logs/today",
                "create_directory",
                serde_json::json!({"directory": "out/logs/today", "parents": true}),
            ),
        ];
        for (intent, action, params) in cases {
            assert_eq!(one(intent), (action.to_owned(), params), "{intent}");
        }
        let risks: Vec<Risk> = ["zip the project", "start the dev server on port 8000", "close firefox"]
            .iter()
            .map(|i| plan(i, None, &rules).expect("plan").steps[0].risk)
            .collect();
        assert_eq!(risks, [Risk::Write, Risk::ReadOnly, Risk::Admin]);
    }

    #[test]
    fn a_writing_clause_without_its_parameters_is_refused_not_guessed() {
        for (intent, needle) in [
            ("write 'hello'", "name the file"),
            ("create a directory", "name the directory"),
            ("commit my changes", "message in quotes"),
            ("start the dev server", "name the port"),
            ("start the dev server on port http", "name the port"),
            ("ask the model", "say what to ask"),
            ("create a github repo", "name the repository"),
            ("close the app", "name the application"),
            ("push to --force", "plain words"),
            ("push origin feature-x", "plain words"),
            ("create a github repo named tools that is not public", "public or private"),
        ] {
            let err = actions(intent).expect_err(intent);
            assert!(err.contains(needle) && err.contains(intent), "{intent}: {err}");
        }
    }

    #[test]
    fn refuses_what_it_does_not_understand_naming_it() {
        let err = actions("check git status and bake a cake").expect_err("cake");
        assert!(err.contains("\"bake a cake\""), "{err}");
        assert!(actions("   ").is_err());
    }

    #[test]
    fn carries_paths_risks_and_file_names() {
        let rules = PolicyRules::defaults();
        let p = plan("check git status in ~/proj and read the file notes/todo.txt", None, &rules).expect("plan");
        assert_eq!(p.steps[0].params["working_dir"], "~/proj");
        assert_eq!(p.steps[1].params["file"], "notes/todo.txt");
        assert_eq!(p.steps[0].risk, Risk::ReadOnly);
        let p = plan("deploy", Some("/srv/app"), &rules).expect("plan");
        assert_eq!((p.steps[0].risk, p.steps[0].params["working_dir"].as_str()), (Risk::Admin, Some("/srv/app")));
    }
}
