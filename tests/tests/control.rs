//! The control plane end to end over NATS: intake → planner → policy (and
//! people) → dispatcher, with the predecessor's scenarios 1–4, 6 and 9–11
//! adapted (§18), plus the governance rules it declared and never enforced.

use serde_json::json;
use skynet_system_tests::System;
use skynet_testkit::{NatsServer, TestDb, eventually};

const DISPATCHED: &str = "skynet.job.dispatched.v1";
const DECIDED: &str = "skynet.job.policy_decided.v1";

fn canonical(dir: &str) -> String {
    std::fs::canonicalize(dir).map(|p| p.display().to_string()).unwrap_or_else(|_| dir.into())
}

#[tokio::test]
async fn read_only_flow_is_approved_by_policy_and_dispatched() -> anyhow::Result<()> {
    // §18.1: one READ_ONLY step, no approval, dispatched as git_status with timeout 90.
    let sys = System::start().await?;
    let job = sys.submit("ro-1", json!({"intent": "check git status", "working_dir": sys.project()})).await?;
    let dispatched = sys.wait_for(job, DISPATCHED).await?;
    let decided = sys.wait_for(job, DECIDED).await?;
    assert_eq!(decided["data"]["risk"], "READ_ONLY");
    assert_eq!(decided["data"]["auto_approved"], true);
    assert_eq!(decided["data"]["requires_approval"], false);
    let step = &dispatched["data"]["spec"]["steps"][0];
    assert_eq!(step["action"], "git_status");
    assert_eq!(step["timeout_secs"], 90);
    assert_eq!(step["params"]["working_dir"], canonical(&sys.project()));
    assert_eq!(
        sys.types(job).await?[..4],
        ["skynet.job.requested.v1", "skynet.job.planned.v1", DECIDED, DISPATCHED],
        "no approval event for an auto-approved job"
    );
    sys.shutdown().await
}

#[tokio::test]
async fn write_flow_waits_for_a_person_then_dispatches() -> anyhow::Result<()> {
    // §18.2 adapted: a WRITE plan waits; the approver is recorded.
    let sys = System::start().await?;
    let job = sys.submit("w-1", json!({"intent": "build the project", "working_dir": sys.project()})).await?;
    let decided = sys.wait_for(job, DECIDED).await?;
    assert_eq!(
        (decided["data"]["risk"].as_str(), decided["data"]["requires_approval"].as_bool()),
        (Some("WRITE"), Some(true))
    );
    let reply = sys.request("skynet.cmd.job.approve", json!({"job_id": job, "token": "token-bob"})).await?;
    assert_eq!(reply["accepted"], true, "{reply}");
    let dispatched = sys.wait_for(job, DISPATCHED).await?;
    assert_eq!(dispatched["data"]["spec"]["steps"][0]["action"], "build_project");
    let approved = sys.wait_for(job, "skynet.job.approved.v1").await?;
    assert_eq!(approved["data"]["approver"], "bob");
    assert_eq!(approved["source"], "skynet/policy");
    // A second approval of a dispatched job is refused as a conflict.
    let again = sys.request("skynet.cmd.job.approve", json!({"job_id": job, "token": "token-carol"})).await?;
    assert_eq!((again["accepted"].as_bool(), again["code"].as_str()), (Some(false), Some("conflict")));
    sys.shutdown().await
}

#[tokio::test]
async fn admin_approval_needs_the_confirmation_phrase() -> anyhow::Result<()> {
    // §18.3: ADMIN deploy; the phrase declared in rules.yaml is now enforced.
    let sys = System::start().await?;
    let job = sys.submit("a-1", json!({"intent": "deploy to production", "working_dir": sys.project()})).await?;
    assert_eq!(sys.wait_for(job, DECIDED).await?["data"]["risk"], "ADMIN");
    let without = sys.request("skynet.cmd.job.approve", json!({"job_id": job, "token": "token-bob"})).await?;
    assert_eq!((without["accepted"].as_bool(), without["code"].as_str()), (Some(false), Some("confirmation_required")));
    let wrong = sys
        .request("skynet.cmd.job.approve", json!({"job_id": job, "token": "token-bob", "confirmation": "yes"}))
        .await?;
    assert_eq!(wrong["code"], "confirmation_mismatch");
    // The bare phrase, typed ahead, confirms nothing: the job's short id is part
    // of it, and the approval request shows the whole of it.
    let typed_ahead = sys
        .request("skynet.cmd.job.approve", json!({"job_id": job, "token": "token-bob", "confirmation": "execute"}))
        .await?;
    assert_eq!(typed_ahead["code"], "confirmation_mismatch");
    let phrase = format!("execute {}", &job.to_string()[..8]);
    let decided = sys.wait_for(job, DECIDED).await?;
    assert!(decided["data"]["reasons"].to_string().contains(&phrase), "shown with the request: {decided}");
    let right = sys
        .request("skynet.cmd.job.approve", json!({"job_id": job, "token": "token-bob", "confirmation": phrase}))
        .await?;
    assert_eq!(right["accepted"], true, "{right}");
    assert_eq!(sys.wait_for(job, DISPATCHED).await?["data"]["spec"]["steps"][0]["action"], "docker_compose_up");
    sys.shutdown().await
}

#[tokio::test]
async fn cancel_and_deny_respect_the_jobs_state() -> anyhow::Result<()> {
    // §18.4 and the §19.11 fix: cancel works once; finished jobs refuse cancel and deny.
    let sys = System::start().await?;
    let job = sys.submit("c-1", json!({"intent": "install dependencies", "working_dir": sys.project()})).await?;
    sys.wait_for(job, DECIDED).await?;
    let cancel = sys
        .request("skynet.cmd.job.cancel", json!({"job_id": job, "token": "token-alice", "reason": "changed my mind"}))
        .await?;
    assert_eq!((cancel["accepted"].as_bool(), cancel["status"].as_str()), (Some(true), Some("cancelled")), "{cancel}");
    let cancelled = sys.wait_for(job, "skynet.job.cancelled.v1").await?;
    assert_eq!(cancelled["data"]["reason"], "changed my mind");
    for (subject, body) in [
        ("skynet.cmd.job.cancel", json!({"job_id": job, "token": "token-alice"})),
        ("skynet.cmd.job.deny", json!({"job_id": job, "token": "token-alice"})),
    ] {
        let r = sys.request(subject, body).await?;
        assert_eq!((r["accepted"].as_bool(), r["code"].as_str()), (Some(false), Some("conflict")), "{subject}: {r}");
    }
    // Unknown jobs and malformed commands get clear answers.
    let unknown =
        sys.request("skynet.cmd.job.cancel", json!({"job_id": uuid::Uuid::nil(), "token": "token-alice"})).await?;
    assert_eq!(unknown["code"], "not_found");
    let bad = sys.request("skynet.cmd.job.approve", json!({"job": "x"})).await?;
    assert_eq!(bad["code"], "bad_request");

    // Deny of a job awaiting approval ends it denied with the reason.
    let job2 = sys.submit("c-2", json!({"intent": "build", "working_dir": sys.project()})).await?;
    sys.wait_for(job2, DECIDED).await?;
    let deny = sys
        .request("skynet.cmd.job.deny", json!({"job_id": job2, "token": "token-bob", "reason": "Too dangerous"}))
        .await?;
    assert_eq!(deny["status"], "denied", "{deny}");
    assert_eq!(sys.wait_for(job2, "skynet.job.denied.v1").await?["data"]["reason"], "Too dangerous");
    sys.shutdown().await
}

#[tokio::test]
async fn multi_step_intents_keep_their_order() -> anyhow::Result<()> {
    // §18.6: git_status then run_tests.
    let sys = System::start().await?;
    let job = sys
        .submit("m-1", json!({"intent": "check git status and run the tests", "working_dir": sys.project()}))
        .await?;
    let d = sys.wait_for(job, DISPATCHED).await?;
    let actions: Vec<_> =
        d["data"]["spec"]["steps"].as_array().into_iter().flatten().map(|s| s["action"].clone()).collect();
    assert_eq!(actions, [json!("git_status"), json!("run_tests")]);
    sys.shutdown().await
}

#[tokio::test]
async fn unintelligible_intents_fail_planning_with_the_reason() -> anyhow::Result<()> {
    let sys = System::start().await?;
    let job = sys.submit("u-1", json!({"intent": "do something unusual"})).await?;
    let failed = sys.wait_for(job, "skynet.job.planning_failed.v1").await?;
    assert!(failed["data"]["reason"].as_str().unwrap_or_default().contains("do something unusual"), "{failed}");
    sys.shutdown().await
}

#[tokio::test]
async fn a_blocked_step_denies_the_job_and_a_bad_directory_too() -> anyhow::Result<()> {
    // An operator blocks git_push in the rules file.
    let rules = skynet_rules::policy::DEFAULT_RULES
        .replace("git_push = \"ADMIN\"\n", "")
        .replace("\"eval_code\"]", "\"eval_code\", \"git_push\"]");
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("policy.toml");
    std::fs::write(&path, rules)?;
    let sys = System::start_with(NatsServer::start()?, TestDb::create().await?, |s| s.policy_file = Some(path)).await?;
    let job = sys.submit("b-1", json!({"intent": "git push", "working_dir": sys.project()})).await?;
    let decided = sys.wait_for(job, DECIDED).await?;
    assert_eq!(
        (decided["data"]["allowed"].as_bool(), decided["data"]["risk"].as_str()),
        (Some(false), Some("BLOCKED"))
    );
    assert_eq!(decided["data"]["blocked_steps"], json!([0]));
    assert!(decided["data"]["reasons"].to_string().contains("git_push is blocked"), "{decided}");
    assert_eq!(sys.types(job).await?.last().map(String::as_str), Some(DECIDED), "denied: nothing after the decision");

    // A working directory outside the sandbox (through ..) is denied too.
    let job = sys.submit("b-2", json!({"intent": "check git status", "working_dir": "/tmp/../etc"})).await?;
    let decided = sys.wait_for(job, DECIDED).await?;
    assert_eq!(decided["data"]["allowed"], false);
    assert!(decided["data"]["reasons"].to_string().contains("/etc"), "{decided}");
    sys.shutdown().await
}

#[tokio::test]
async fn an_unanswered_approval_cancels_the_job_even_across_a_restart() -> anyhow::Result<()> {
    let short = |s: &mut skynet_cli::settings::Settings| s.approval_timeout_secs = Some(2);
    let sys = System::start_with(NatsServer::start()?, TestDb::create().await?, short).await?;
    let job = sys.submit("t-1", json!({"intent": "build the project", "working_dir": sys.project()})).await?;
    let decided = sys.wait_for(job, DECIDED).await?;
    assert_eq!(decided["data"]["approval_timeout_secs"], 2);
    // The policy service goes down before the deadline and comes back after it.
    let (nats, db) = sys.stop_services().await?;
    let sys = System::start_with(nats, db, short).await?;
    let cancelled = sys.wait_for(job, "skynet.job.cancelled.v1").await?;
    assert_eq!(cancelled["data"]["reason"], "approval timed out");
    assert_eq!(cancelled["data"]["by"], "policy");
    let late = sys.request("skynet.cmd.job.approve", json!({"job_id": job, "token": "token-bob"})).await?;
    assert_eq!(late["code"], "conflict");
    sys.shutdown().await
}

#[tokio::test]
async fn requesters_over_their_rate_limit_are_rejected_not_queued() -> anyhow::Result<()> {
    let rules = skynet_rules::policy::DEFAULT_RULES.to_owned()
        + "\n[rate_limits.requesters.bob]\nper_minute = 2\nper_hour = 10\n";
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("policy.toml");
    std::fs::write(&path, rules)?;
    let sys = System::start_with(NatsServer::start()?, TestDb::create().await?, |s| s.policy_file = Some(path)).await?;
    // A mere claim to be bob counts against the claimant's source, not against
    // bob, and is recorded as a claim.
    let claimed = sys
        .submit_anonymous(
            "rl-claim",
            json!({"intent": "list files", "requested_by": "bob", "working_dir": sys.project()}),
        )
        .await?;
    let opened = sys.wait_for(claimed, "skynet.job.requested.v1").await?;
    assert_eq!(opened["data"]["requested_by"], "bob (unverified)");
    let mut jobs = Vec::new();
    for i in 0..3 {
        jobs.push(
            sys.submit_as(
                "token-bob",
                &format!("rl-{i}"),
                json!({"intent": "list files", "requested_by": "somebody else", "working_dir": sys.project()}),
            )
            .await?,
        );
        // One at a time, so which one is third is certain.
        sys.wait_for_any(jobs[i], i).await?;
    }
    let first = sys.wait_for(jobs[0], "skynet.job.requested.v1").await?;
    assert_eq!(first["data"]["requested_by"], "bob", "the token's principal, not the claim");
    let rejected = eventually(skynet_system_tests::WAIT, "the rate-limit rejection", || async {
        let r = sys.read_all("SKYNET_EVENTS", "skynet.task.rejected").await.ok()?;
        r.first().map(|(_, _, p)| serde_json::from_slice::<serde_json::Value>(p).unwrap_or_default())
    })
    .await?;
    assert_eq!(rejected["data"]["code"], "rate_limited");
    assert_eq!(rejected["data"]["job_id"], jobs[2].to_string());
    assert!(rejected["data"]["reason"].as_str().unwrap_or_default().contains("2 tasks per minute"), "{rejected}");
    assert!(sys.job_events(jobs[2]).await?.is_empty(), "not queued");
    // Other requesters are unaffected.
    let other =
        sys.submit_as("token-carol", "rl-other", json!({"intent": "list files", "working_dir": sys.project()})).await?;
    sys.wait_for(other, "skynet.job.requested.v1").await?;
    sys.shutdown().await
}

#[tokio::test]
async fn single_action_policy_check_is_case_insensitive() -> anyhow::Result<()> {
    let sys = System::start().await?;
    for (action, allowed, risk, approval) in [
        ("git_status", true, "low", false),
        ("GIT_STATUS", true, "low", false),
        ("file_write", true, "med", true),
        ("deploy_prod", true, "high", true),
        ("please_shell_exec", false, "high", false),
    ] {
        let r = sys.request("skynet.policy.check", json!({"action": action, "target": "laptop"})).await?;
        assert_eq!(
            (r["allowed"].as_bool(), r["risk_level"].as_str(), r["requires_approval"].as_bool()),
            (Some(allowed), Some(risk), Some(approval)),
            "{action}: {r}"
        );
    }
    sys.shutdown().await
}
