//! The policy decision for a plan. Pure: the rules and the plan in, the
//! `policy_decided` data out, with every reason spelled out.

use skynet_contract::job::PolicyDecided;
use skynet_contract::{Plan, Risk};
use skynet_rules::mapping::map_step;
use skynet_rules::{PolicyRules, catalog};

/// Classifies `plan`, whose job asked to run in `working_dir`.
pub fn decide_plan(plan: &Plan, working_dir: Option<&str>, rules: &PolicyRules) -> PolicyDecided {
    let mut reasons = Vec::new();
    let mut blocked_steps = Vec::new();
    let mut step_risks = Vec::with_capacity(plan.steps.len());
    let mut dirs_ok = true;
    // Every directory of the plan against the sandbox as it resolves now.
    let bounds = rules.sandbox_now();

    if plan.steps.is_empty() {
        reasons.push("plan has no steps: nothing to approve".to_owned());
    }
    if let Some(dir) = working_dir
        && let Err(e) = bounds.check(dir)
    {
        dirs_ok = false;
        reasons.push(format!("job: {e}"));
    }
    // A step's relative directory is the job's, as the dispatcher will resolve it.
    let job_dir = working_dir.map(str::to_owned).or_else(|| bounds.default_dir()).unwrap_or_default();
    for (i, step) in plan.steps.iter().enumerate() {
        let action = step
            .action
            .as_deref()
            .map(str::to_ascii_lowercase)
            .or_else(|| map_step(&step.title, &step.description).map(str::to_owned));
        let risk = match &action {
            Some(a) => {
                let r = rules.classify(a);
                if r == Risk::Blocked {
                    reasons.push(format!("step {i} ({:?}): action {a} is blocked by policy", step.title));
                }
                r.max(step.risk)
            }
            None => {
                reasons.push(format!(
                    "step {i} ({:?}) maps to no known action; classified {}",
                    step.title,
                    rules.risk.unknown_action.as_str()
                ));
                rules.risk.unknown_action.max(step.risk)
            }
        };
        // Directories the step runs in or reads must exist inside the sandbox
        // (a path it creates, like create_directory's, is checked by the
        // dispatcher and the executor instead).
        let dir_keys: Vec<&str> = match action.as_deref().and_then(catalog::action) {
            Some(entry) => std::iter::once("working_dir")
                .chain(entry.all_params().filter(|p| p.kind == catalog::Kind::Dir).map(|p| p.name))
                .collect(),
            None => vec!["working_dir", "directory", "path"],
        };
        for key in dir_keys {
            if let Some(dir) = step.params.get(key).and_then(|v| v.as_str())
                && let Err(e) = bounds.check_step_dir(dir, &job_dir)
            {
                dirs_ok = false;
                blocked_steps.push(i as u32);
                reasons.push(format!("step {i} ({:?}): {e}", step.title));
            }
        }
        if risk == Risk::Blocked {
            blocked_steps.push(i as u32);
        }
        step_risks.push(risk);
    }
    blocked_steps.dedup();
    let risk = step_risks.iter().copied().max().unwrap_or(Risk::ReadOnly);
    let allowed = blocked_steps.is_empty() && dirs_ok && !plan.steps.is_empty();
    let requires_approval = allowed && rules.requires_approval(risk);
    let approvals_required = if requires_approval { rules.approvals_required(risk) } else { 0 };
    if allowed {
        reasons.push(if requires_approval {
            format!("overall risk {}: needs approval by {approvals_required} person(s)", risk.as_str())
        } else {
            format!("overall risk {}: approved automatically by policy", risk.as_str())
        });
    }
    PolicyDecided {
        allowed,
        risk,
        step_risks,
        requires_approval,
        approvals_required,
        auto_approved: allowed && !requires_approval,
        reasons,
        blocked_steps,
        approval_timeout_secs: requires_approval.then_some(rules.approval.timeout_secs),
    }
}

/// Holds a job the initiative service proposed to what the rules allow it
/// (`[initiative]`): no step above `max_risk` or outside `actions`, and nothing
/// that would wait for a person — such a job is denied, not queued.
pub fn restrict_initiative(decision: &mut PolicyDecided, plan: &Plan, rules: &PolicyRules) {
    let limits = &rules.initiative;
    let mut held = Vec::new();
    for (i, step) in plan.steps.iter().enumerate() {
        let risk = decision.step_risks.get(i).copied().unwrap_or(Risk::Admin);
        let action = step
            .action
            .as_deref()
            .map(str::to_ascii_lowercase)
            .or_else(|| map_step(&step.title, &step.description).map(str::to_owned));
        if risk > limits.max_risk {
            decision.reasons.push(format!(
                "step {i} ({:?}) is {}: initiative jobs may be at most {}",
                step.title,
                risk.as_str(),
                limits.max_risk.as_str()
            ));
            held.push(i as u32);
        } else if !limits.actions.is_empty() && !action.as_ref().is_some_and(|a| limits.actions.contains(a)) {
            decision.reasons.push(format!(
                "step {i} ({:?}): action {} is not one initiative jobs may use",
                step.title,
                action.as_deref().unwrap_or("(none)")
            ));
            held.push(i as u32);
        }
    }
    if held.is_empty() && !decision.requires_approval {
        return;
    }
    if decision.requires_approval {
        decision.reasons.push("initiative jobs never wait for a person: one that needs approval is denied".into());
    }
    decision.reasons.retain(|r| !r.starts_with("overall risk"));
    decision.blocked_steps.extend(held);
    decision.blocked_steps.sort_unstable();
    decision.blocked_steps.dedup();
    decision.allowed = false;
    decision.requires_approval = false;
    decision.approvals_required = 0;
    decision.auto_approved = false;
    decision.approval_timeout_secs = None;
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use skynet_contract::PlanStep;

    use super::*;

    fn step(title: &str, action: Option<&str>, risk: Risk) -> PlanStep {
        PlanStep {
            title: title.into(),
            description: String::new(),
            action: action.map(str::to_owned),
            params: BTreeMap::new(),
            risk,
            estimated_minutes: 1,
            continue_on_error: false,
        }
    }

    fn plan(steps: Vec<PlanStep>) -> Plan {
        Plan { summary: "s".into(), steps, artifacts: vec![] }
    }

    #[test]
    fn table_of_plans_and_decisions() {
        let rules = PolicyRules::defaults();
        // (steps, allowed, risk, requires approval, auto approved, approvers)
        let cases: Vec<(Vec<PlanStep>, bool, Risk, bool, bool, u8)> = vec![
            (vec![step("Check git status", Some("git_status"), Risk::ReadOnly)], true, Risk::ReadOnly, false, true, 0),
            (vec![step("Run tests", None, Risk::ReadOnly)], true, Risk::ReadOnly, false, true, 0),
            (vec![step("Build", Some("build_project"), Risk::ReadOnly)], true, Risk::Write, true, false, 1),
            (vec![step("Deploy to production", None, Risk::ReadOnly)], true, Risk::Admin, true, false, 1),
            (vec![step("Mystery", None, Risk::ReadOnly)], true, Risk::Admin, true, false, 1),
            (vec![step("Status", Some("GIT_STATUS"), Risk::ReadOnly)], true, Risk::ReadOnly, false, true, 0),
            (
                vec![
                    step("Status", Some("git_status"), Risk::ReadOnly),
                    step("Shell", Some("shell_exec"), Risk::Write),
                ],
                false,
                Risk::Blocked,
                false,
                false,
                0,
            ),
            (vec![], false, Risk::ReadOnly, false, false, 0),
        ];
        for (steps, allowed, risk, approval, auto, approvers) in cases {
            let titles: Vec<_> = steps.iter().map(|s| s.title.clone()).collect();
            let d = decide_plan(&plan(steps), None, &rules);
            assert_eq!(
                (d.allowed, d.risk, d.requires_approval, d.auto_approved, d.approvals_required),
                (allowed, risk, approval, auto, approvers),
                "{titles:?}: {:?}",
                d.reasons
            );
            assert!(!d.reasons.is_empty(), "every decision has reasons");
        }
    }

    #[test]
    fn blocked_steps_are_named_and_read_only_can_require_approval() {
        let rules = PolicyRules::defaults();
        let d = decide_plan(&plan(vec![step("x", Some("eval_code"), Risk::ReadOnly)]), None, &rules);
        assert_eq!(d.blocked_steps, [0]);
        assert!(d.reasons.iter().any(|r| r.contains("eval_code is blocked")), "{:?}", d.reasons);

        let strict = PolicyRules::from_toml(
            &skynet_rules::policy::DEFAULT_RULES
                .replace("auto_approve_read_only = true", "auto_approve_read_only = false"),
            "strict",
        )
        .expect("rules");
        let d = decide_plan(&plan(vec![step("s", Some("git_status"), Risk::ReadOnly)]), None, &strict);
        assert!(d.requires_approval && !d.auto_approved);
    }

    #[test]
    fn directories_outside_the_sandbox_deny_the_job() {
        let rules = PolicyRules::defaults();
        let mut s = step("List", Some("list_directory"), Risk::ReadOnly);
        s.params.insert("directory".into(), "/etc".into());
        let d = decide_plan(&plan(vec![s]), None, &rules);
        assert!(!d.allowed);
        assert_eq!(d.blocked_steps, [0]);
        let d = decide_plan(&plan(vec![step("s", Some("git_status"), Risk::ReadOnly)]), Some("/etc/../etc"), &rules);
        assert!(!d.allowed, "{:?}", d.reasons);
    }

    #[test]
    fn a_relative_directory_is_the_jobs() {
        let rules = PolicyRules::defaults();
        let job = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir(job.path().join("only-here")).expect("dir");
        let dir = job.path().display().to_string();
        let list = |d: &str| {
            let mut s = step("List", Some("list_directory"), Risk::ReadOnly);
            s.params.insert("directory".into(), d.into());
            decide_plan(&plan(vec![s]), Some(&dir), &rules)
        };
        // Exists under the job's directory, not under the policy's own.
        assert!(list("only-here").allowed, "{:?}", list("only-here").reasons);
        let d = list("../../../../../../../etc");
        assert!(!d.allowed && d.blocked_steps == [0], "{:?}", d.reasons);
    }

    #[test]
    fn every_decision_resolves_the_sandbox_afresh() {
        let base = tempfile::tempdir().expect("tempdir");
        let root = std::fs::canonicalize(base.path()).expect("canonical");
        std::fs::create_dir(root.join("proj")).expect("dir");
        let mut rules = PolicyRules::defaults();
        rules.sandbox.allowed_roots = vec![root.display().to_string()];
        rules.sandbox.denied_paths = vec![root.join("secret").display().to_string()];
        let proj = root.join("proj").display().to_string();
        let decide = || decide_plan(&plan(vec![step("s", Some("git_status"), Risk::ReadOnly)]), Some(&proj), &rules);
        assert!(decide().allowed, "{:?}", decide().reasons);
        // The denied path appears as a link to the project: the next decision
        // of the same rules refuses the project.
        std::os::unix::fs::symlink(root.join("proj"), root.join("secret")).expect("link");
        let d = decide();
        assert!(!d.allowed && d.reasons.iter().any(|r| r.contains("inside denied path")), "{:?}", d.reasons);
    }

    #[test]
    fn initiative_jobs_run_only_what_needs_no_person() {
        let rules = PolicyRules::defaults();
        let decide = |steps: Vec<PlanStep>, rules: &PolicyRules| {
            let p = plan(steps);
            let mut d = decide_plan(&p, None, rules);
            restrict_initiative(&mut d, &p, rules);
            d
        };
        let d = decide(vec![step("Disk", Some("check_disk_space"), Risk::ReadOnly)], &rules);
        assert!(d.allowed && d.auto_approved, "{:?}", d.reasons);

        // A WRITE step (whatever the plan labels it) denies the whole job, naming the step.
        let d = decide(
            vec![
                step("Disk", Some("check_disk_space"), Risk::ReadOnly),
                step("Write", Some("file_write"), Risk::ReadOnly),
            ],
            &rules,
        );
        assert!(!d.allowed && !d.requires_approval && d.approval_timeout_secs.is_none());
        assert_eq!(d.blocked_steps, [1]);
        assert!(d.reasons.iter().any(|r| r.contains("step 1") && r.contains("WRITE")), "{:?}", d.reasons);
        assert!(!d.reasons.iter().any(|r| r.starts_with("overall risk")), "{:?}", d.reasons);

        // Raising max_risk to WRITE still never queues it for a person.
        let lax = PolicyRules::from_toml(
            &skynet_rules::policy::DEFAULT_RULES.replace("max_risk = \"READ_ONLY\"", "max_risk = \"WRITE\""),
            "lax",
        )
        .expect("rules");
        let d = decide(vec![step("Write", Some("file_write"), Risk::Write)], &lax);
        assert!(!d.allowed && d.approvals_required == 0, "{:?}", d.reasons);
        assert!(d.reasons.iter().any(|r| r.contains("never wait for a person")), "{:?}", d.reasons);

        // An allow-list of actions.
        let narrow = PolicyRules::from_toml(
            &skynet_rules::policy::DEFAULT_RULES.replace("actions = []", "actions = [\"check_memory\"]"),
            "narrow",
        )
        .expect("rules");
        let d = decide(vec![step("Status", Some("git_status"), Risk::ReadOnly)], &narrow);
        assert!(!d.allowed && d.blocked_steps == [0], "{:?}", d.reasons);
        assert!(decide(vec![step("Mem", Some("check_memory"), Risk::ReadOnly)], &narrow).allowed);
    }
}
