//! Plan → execution spec. Pure but for path canonicalisation.

use std::collections::BTreeMap;
use std::path::PathBuf;

use skynet_contract::plan::PROJECT_COMMAND;
use skynet_contract::{ExecSpec, ExecStep, Risk};
use skynet_job::Job;
use skynet_rules::mapping::map_step;
use skynet_rules::{PolicyRules, catalog, project, sandbox};

/// Builds the spec for an approved job, or says which step cannot run and why.
pub fn build_spec(job: &Job, rules: &PolicyRules) -> Result<ExecSpec, String> {
    let plan = job.plan.as_ref().ok_or("job has no plan")?;
    let approved = job.policy.as_ref().ok_or("job has no policy decision")?.risk;
    if approved == Risk::Blocked {
        return Err("the policy blocked this job".into());
    }
    // Every directory and path of the spec against the sandbox as it resolves now.
    let bounds = rules.sandbox_now();
    let job_dir = match &job.request.working_dir {
        Some(d) => d.clone(),
        // No directory asked for: the first sandbox root, like the predecessor's
        // default sandbox root.
        None => bounds.default_dir().ok_or("no sandbox root exists on this machine")?,
    };
    let working_dir = bounds.check(&job_dir).map_err(|e| e.to_string())?.display().to_string();
    let mut steps = Vec::with_capacity(plan.steps.len());
    for (i, step) in plan.steps.iter().enumerate() {
        let name = format!("step {i} ({:?})", step.title);
        let action = match &step.action {
            Some(a) => a.trim().to_ascii_lowercase(),
            None => map_step(&step.title, &step.description)
                .ok_or_else(|| format!("{name} maps to no action; the dispatcher does not guess"))?
                .to_owned(),
        };
        let risk = rules.classify(&action);
        if risk == Risk::Blocked {
            return Err(format!("{name}: action {action} is blocked by policy"));
        }
        let entry = catalog::action(&action).ok_or_else(|| format!("{name}: unknown action {action:?}"))?;
        if risk > approved {
            return Err(format!(
                "{name}: action {action} needs {} but {} was approved",
                risk.as_str(),
                approved.as_str()
            ));
        }
        catalog::check_params(entry, &step.params).map_err(|e| format!("{name}: {e}"))?;
        let params =
            step_params(entry, &step.params, &working_dir, rules, &bounds).map_err(|e| format!("{name}: {e}"))?;
        steps.push(ExecStep {
            index: i as u32,
            action: action.clone(),
            params,
            timeout_secs: entry.step_timeout_secs.min(catalog::STEP_TIMEOUT_CAP_SECS),
            risk,
            continue_on_error: step.continue_on_error,
            description: if step.description.is_empty() { step.title.clone() } else { step.description.clone() },
        });
    }
    let total = job
        .request
        .constraints
        .get("timeout_secs")
        .and_then(|v| v.as_u64())
        .unwrap_or(catalog::JOB_TIMEOUT_SECS)
        .min(catalog::JOB_TIMEOUT_SECS);
    Ok(ExecSpec { steps, working_dir, total_timeout_secs: total, approved_risk: approved })
}

/// The step's parameters as the executor gets them: every directory and path
/// canonical and inside the sandbox (relative paths against the step's
/// directory), the job's directory where one is required and missing, and the
/// project's own command for tests, lint, build and install.
fn step_params(
    entry: &catalog::Action,
    given: &BTreeMap<String, serde_json::Value>,
    job_dir: &str,
    rules: &PolicyRules,
    bounds: &sandbox::Bounds,
) -> Result<BTreeMap<String, serde_json::Value>, String> {
    let mut params = given.clone();
    for p in entry.all_params().filter(|p| p.kind == catalog::Kind::Dir) {
        match params.get(p.name).and_then(|v| v.as_str()).map(str::to_owned) {
            Some(dir) => {
                let canonical = bounds.check_step_dir(&dir, job_dir).map_err(|e| e.to_string())?;
                params.insert(p.name.into(), canonical.display().to_string().into());
            }
            // Every step names its directory in the spec, so the log says where it ran.
            None if p.required || p.name == "working_dir" => {
                params.insert(p.name.into(), job_dir.into());
            }
            None => {}
        }
    }
    let step_dir = PathBuf::from(params.get("working_dir").and_then(|v| v.as_str()).unwrap_or(job_dir));
    for p in entry.all_params().filter(|p| p.kind == catalog::Kind::Path) {
        if let Some(path) = params.get(p.name).and_then(|v| v.as_str()).map(str::to_owned) {
            let canonical = bounds.check_path(&path, &step_dir).map_err(|e| format!("parameter {:?}: {e}", p.name))?;
            params.insert(p.name.into(), canonical.display().to_string().into());
        }
    }
    if entry.project_command {
        let argv = project::command(entry.name, &step_dir, &rules.projects)?;
        params.insert(PROJECT_COMMAND.into(), argv.into());
    }
    Ok(params)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use skynet_contract::job::{JobEvent, Planned, PolicyDecided, Requested};
    use skynet_contract::{Plan, PlanStep};
    use skynet_job::replay;

    use super::*;

    fn job(steps: Vec<(&str, &str, Option<&str>, Risk)>, approved: Risk, dir: Option<&str>) -> Job {
        let plan = Plan {
            summary: "s".into(),
            steps: steps
                .into_iter()
                .map(|(t, d, a, r)| PlanStep {
                    title: t.into(),
                    description: d.into(),
                    action: a.map(str::to_owned),
                    params: BTreeMap::new(),
                    risk: r,
                    estimated_minutes: 1,
                    continue_on_error: false,
                })
                .collect(),
            artifacts: vec![],
        };
        let events = [
            JobEvent::Requested(Requested {
                intent: "x".into(),
                working_dir: dir.map(str::to_owned),
                project: None,
                requested_by: None,
                constraints: BTreeMap::new(),
                plan: None,
                request_source: "t".into(),
                request_id: "1".into(),
            }),
            JobEvent::Planned(Planned {
                plan,
                planner: "rules".into(),
                fallback_reason: None,
                memories: vec![],
                warnings: vec![],
            }),
            JobEvent::PolicyDecided(PolicyDecided {
                allowed: true,
                risk: approved,
                step_risks: vec![],
                requires_approval: false,
                approvals_required: 0,
                auto_approved: true,
                reasons: vec![],
                blocked_steps: vec![],
                approval_timeout_secs: None,
            }),
        ];
        replay(&events).expect("replays").expect("job")
    }

    #[test]
    fn the_predecessors_mapping_scenario() {
        // §18.9: three steps, WRITE approved, in a project with a Makefile.
        let project = tempfile::tempdir().expect("tempdir");
        std::fs::write(project.path().join("Makefile"), "test:\n").expect("Makefile");
        let dir = std::fs::canonicalize(project.path()).expect("dir").display().to_string();
        let j = job(
            vec![
                ("Check git status", "Run git status", None, Risk::ReadOnly),
                ("Run tests", "Execute pytest", None, Risk::ReadOnly),
                ("Build app", "Build the project", None, Risk::Write),
            ],
            Risk::Write,
            Some(&dir),
        );
        let spec = build_spec(&j, &PolicyRules::defaults()).expect("spec");
        let got: Vec<_> = spec.steps.iter().map(|s| (s.action.as_str(), s.timeout_secs)).collect();
        assert_eq!(got, [("git_status", 90), ("run_tests", 300), ("build_project", 600)]);
        assert_eq!(spec.working_dir, dir);
        assert_eq!(spec.steps[0].params["working_dir"], dir.as_str());
        // The commands come from the project, recorded in the spec.
        assert_eq!(spec.steps[1].params[PROJECT_COMMAND], serde_json::json!(["make", "test"]));
        assert_eq!(spec.steps[2].params[PROJECT_COMMAND], serde_json::json!(["make"]));
        // No project file: no command, and the step is named.
        let bare = tempfile::tempdir().expect("tempdir");
        let bare_dir = bare.path().display().to_string();
        let j = job(vec![("Run tests", "", Some("run_tests"), Risk::ReadOnly)], Risk::Write, Some(&bare_dir));
        let err = build_spec(&j, &PolicyRules::defaults()).expect_err("nothing to run");
        assert!(err.contains("step 0") && err.contains("no command for run_tests"), "{err}");
    }

    #[test]
    fn a_relative_directory_is_the_jobs_not_the_dispatchers() {
        let project = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir(project.path().join("sub")).expect("sub");
        let dir = std::fs::canonicalize(project.path()).expect("dir").display().to_string();
        let mut j = job(vec![("List", "", Some("list_directory"), Risk::ReadOnly)], Risk::ReadOnly, Some(&dir));
        let spec = build_spec(&j, &PolicyRules::defaults()).expect("spec");
        assert_eq!(spec.steps[0].params["directory"], dir.as_str(), "no directory: the job's");
        for (given, want) in [(".", dir.clone()), ("sub", format!("{dir}/sub")), ("sub/..", dir.clone())] {
            let plan = j.plan.as_mut().expect("plan");
            plan.steps[0].params.insert("directory".into(), given.into());
            let spec = build_spec(&j, &PolicyRules::defaults()).expect("spec");
            assert_eq!(spec.steps[0].params["directory"], want.as_str(), "{given}");
        }
    }

    #[test]
    fn refusals_name_the_step() {
        let rules = PolicyRules::defaults();
        let cases: Vec<(Job, &str)> = vec![
            // §18.10: no more silent list_directory fallback.
            (
                job(
                    vec![("Do something unusual", "Perform an uncommon workflow", None, Risk::Write)],
                    Risk::Write,
                    None,
                ),
                "maps to no action",
            ),
            // §18.11: an ADMIN action in a READ_ONLY approval.
            (
                job(vec![("Deploy to production", "", None, Risk::ReadOnly)], Risk::ReadOnly, None),
                "needs ADMIN but READ_ONLY",
            ),
            (job(vec![("x", "", Some("shell_exec"), Risk::ReadOnly)], Risk::Admin, None), "blocked"),
            (job(vec![("x", "", Some("teleport"), Risk::ReadOnly)], Risk::Admin, None), "unknown action"),
            (
                job(vec![("Read", "", Some("file_read"), Risk::ReadOnly)], Risk::Admin, None),
                "requires parameter \"file\"",
            ),
            (job(vec![("Status", "", Some("git_status"), Risk::ReadOnly)], Risk::Admin, Some("/etc")), "/etc"),
        ];
        for (j, want) in cases {
            let err = build_spec(&j, &rules).expect_err(want);
            assert!(err.contains(want), "{err}");
        }
    }

    #[test]
    fn explicit_actions_win_and_install_dependencies_maps() {
        let j = job(
            vec![
                ("Install dependencies", "", None, Risk::Write),
                ("Check things", "", Some("GIT_DIFF"), Risk::ReadOnly),
            ],
            Risk::Write,
            None,
        );
        let spec = build_spec(&j, &PolicyRules::defaults()).expect("spec");
        let actions: Vec<_> = spec.steps.iter().map(|s| s.action.as_str()).collect();
        assert_eq!(actions, ["install_dependencies", "git_diff"]);
        assert_eq!(spec.total_timeout_secs, 1800);
    }
}
