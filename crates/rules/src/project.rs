//! The commands of a project's own tasks: how `run_tests`, `lint_project`,
//! `build_project`, `install_dependencies` and `start_dev_server` run in a
//! given directory.
//!
//! A plan never says which command (a free `command` parameter made "run the
//! tests" an auto-approved way to run anything). The command comes from the
//! policy file's allow-list for that directory, else from the project's files
//! (`Cargo.toml` → `cargo test`, ...). The dispatcher resolves it and writes it
//! into the execution spec, so the log records exactly what ran.

use std::path::Path;

use serde::Deserialize;

/// Commands allow-listed for one project directory in the policy file
/// (`[[projects]]`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProjectCommands {
    /// The project's directory (canonicalised when compared).
    pub dir: String,
    #[serde(default)]
    pub run_tests: Option<Vec<String>>,
    #[serde(default)]
    pub lint_project: Option<Vec<String>>,
    #[serde(default)]
    pub build_project: Option<Vec<String>>,
    #[serde(default)]
    pub install_dependencies: Option<Vec<String>>,
    /// Runs in the background until the job ends; told its port in `PORT`.
    #[serde(default)]
    pub start_dev_server: Option<Vec<String>>,
}

impl ProjectCommands {
    fn get(&self, action: &str) -> Option<&Vec<String>> {
        match action {
            "run_tests" => self.run_tests.as_ref(),
            "lint_project" => self.lint_project.as_ref(),
            "build_project" => self.build_project.as_ref(),
            "install_dependencies" => self.install_dependencies.as_ref(),
            "start_dev_server" => self.start_dev_server.as_ref(),
            _ => None,
        }
    }
}

/// The actions with a project command, in the order of [`DETECT`]'s columns.
const ACTIONS: [&str; 5] = ["run_tests", "lint_project", "build_project", "install_dependencies", "start_dev_server"];

/// (marker file, [tests, lint, build, install, dev server]) in the order they
/// are tried; an empty command means "not this marker's".
const DETECT: &[(&str, [&str; 5])] = &[
    // `cargo run` and `go run .` run a program, not a dev server: only an
    // allow-listed command starts one in those projects.
    ("Cargo.toml", ["cargo test", "cargo clippy", "cargo build", "cargo fetch", ""]),
    ("package.json", ["npm test", "npm run lint", "npm run build", "npm install", "npm run dev"]),
    ("go.mod", ["go test ./...", "go vet ./...", "go build ./...", "go mod download", ""]),
    // A Makefile is the project's own word on how; it has no install target by
    // convention, so install falls through to the Python markers below.
    ("Makefile", ["make test", "make lint", "make", "", "make dev"]),
    ("pyproject.toml", ["pytest", "ruff check .", "python3 -m build", "pip install .", ""]),
    ("pytest.ini", ["pytest", "ruff check .", "", "pip install -r requirements.txt", ""]),
    ("setup.py", ["pytest", "ruff check .", "python3 setup.py build", "pip install .", ""]),
    ("requirements.txt", ["pytest", "ruff check .", "", "pip install -r requirements.txt", ""]),
];

fn slot(action: &str) -> Option<usize> {
    ACTIONS.iter().position(|a| *a == action)
}

/// The argv of `action` in the canonical directory `dir`: the allow-list's
/// entry for `dir` if it names one, else the first project file found.
pub fn command(action: &str, dir: &Path, allow_list: &[ProjectCommands]) -> Result<Vec<String>, String> {
    let i = slot(action).ok_or_else(|| format!("{action} has no project command"))?;
    let listed = allow_list
        .iter()
        .filter(|p| std::fs::canonicalize(crate::sandbox::expand_home(&p.dir)).is_ok_and(|d| d == dir))
        .find_map(|p| p.get(action));
    if let Some(argv) = listed {
        return Ok(argv.clone());
    }
    for (marker, commands) in DETECT {
        if dir.join(marker).is_file() && !commands[i].is_empty() {
            return Ok(commands[i].split_whitespace().map(str::to_owned).collect());
        }
    }
    let markers: Vec<&str> = DETECT.iter().filter(|(_, c)| !c[i].is_empty()).map(|(m, _)| *m).collect();
    Err(format!(
        "no command for {action} in {}: none of {} is there, and the policy file's [[projects]] allow-list names \
         none for this directory",
        dir.display(),
        markers.join(", ")
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detected_from_files_or_taken_from_the_allow_list() -> std::io::Result<()> {
        let d = tempfile::tempdir()?;
        let dir = std::fs::canonicalize(d.path())?;
        assert!(command("run_tests", &dir, &[]).is_err_and(|e| e.contains("Cargo.toml")));
        std::fs::write(dir.join("Makefile"), "test:\n")?;
        assert_eq!(command("run_tests", &dir, &[]), Ok(vec!["make".into(), "test".into()]));
        assert!(command("install_dependencies", &dir, &[]).is_err(), "make has no install");
        std::fs::write(dir.join("Cargo.toml"), "")?;
        assert_eq!(command("run_tests", &dir, &[]), Ok(vec!["cargo".into(), "test".into()]));
        let listed = ProjectCommands {
            dir: d.path().display().to_string(),
            run_tests: Some(vec!["cargo".into(), "test".into(), "--all".into()]),
            lint_project: None,
            build_project: None,
            install_dependencies: None,
            start_dev_server: None,
        };
        assert_eq!(command("run_tests", &dir, std::slice::from_ref(&listed)).map(|v| v.len()), Ok(3));
        assert_eq!(command("build_project", &dir, &[listed]), Ok(vec!["cargo".into(), "build".into()]));
        assert!(command("git_status", &dir, &[]).is_err());
        assert_eq!(command("start_dev_server", &dir, &[]), Ok(vec!["make".into(), "dev".into()]));
        Ok(())
    }
}
