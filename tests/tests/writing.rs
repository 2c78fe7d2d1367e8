//! The writing actions through the whole pipeline, as a user asks for them: the
//! rule planner takes names and content from the intent, the policy asks for
//! one approver (WRITE), and the local executor writes inside the sandbox.

use serde_json::json;
use skynet_system_tests::{System, token};
use skynet_testkit::{NatsServer, TestDb};

#[tokio::test]
async fn a_directory_a_file_and_a_repository_after_one_approval() -> anyhow::Result<()> {
    let sys = System::start_with(NatsServer::start()?, TestDb::create().await?, |s| {
        s.executor.providers = vec!["local".into()];
    })
    .await?;
    let intent = "create a directory named build and write 'hello, world and more' to notes.txt, \
                  then initialise a git repository";
    let job = sys.submit("write-1", json!({"intent": intent, "working_dir": sys.project()})).await?;
    let planned = sys.wait_for(job, "skynet.job.planned.v1").await?;
    let steps = planned["data"]["plan"]["steps"].as_array().cloned().unwrap_or_default();
    let actions: Vec<&str> = steps.iter().filter_map(|s| s["action"].as_str()).collect();
    assert_eq!(actions, ["create_directory", "file_write", "git_init"]);
    assert_eq!(steps[1]["params"]["content"], "hello, world and more");
    let decided = sys.wait_for(job, "skynet.job.policy_decided.v1").await?;
    assert_eq!(decided["data"]["requires_approval"], true, "WRITE waits for a person: {decided}");
    let project = std::path::PathBuf::from(sys.project());
    assert!(!project.join("notes.txt").exists(), "nothing written before the approval");
    let answer = sys.request("skynet.cmd.job.approve", json!({"job_id": job, "token": token("bob")})).await?;
    assert_eq!(answer["accepted"], true, "{answer}");
    sys.wait_for(job, "skynet.job.succeeded.v1").await?;
    assert!(project.join("build").is_dir());
    assert_eq!(std::fs::read_to_string(project.join("notes.txt"))?, "hello, world and more");
    assert!(project.join(".git").is_dir(), "git init ran");
    sys.shutdown().await
}

#[tokio::test]
async fn a_repository_initialised_staged_and_committed_as_skynet_and_an_empty_commit_refused() -> anyhow::Result<()> {
    let sys = System::start_with(NatsServer::start()?, TestDb::create().await?, |s| {
        s.executor.providers = vec!["local".into()];
    })
    .await?;
    let project = std::path::PathBuf::from(sys.project());
    let approve = |job| sys.request("skynet.cmd.job.approve", json!({"job_id": job, "token": token("bob")}));
    let intent = "initialise a git repository and stage all changes, then commit with message 'first commit'";
    let job = sys.submit("commit-1", json!({"intent": intent, "working_dir": sys.project()})).await?;
    sys.wait_for(job, "skynet.job.policy_decided.v1").await?;
    assert_eq!(approve(job).await?["accepted"], true);
    sys.wait_for(job, "skynet.job.succeeded.v1").await?;
    let log =
        std::process::Command::new("git").args(["log", "--format=%an <%ae>|%s"]).current_dir(&project).output()?;
    assert_eq!(String::from_utf8_lossy(&log.stdout).trim(), "SKYNET <skynet@localhost>|first commit");
    // Nothing staged: a clear failure, not a crash.
    let job =
        sys.submit("commit-2", json!({"intent": "commit with message 'again'", "working_dir": sys.project()})).await?;
    sys.wait_for(job, "skynet.job.policy_decided.v1").await?;
    assert_eq!(approve(job).await?["accepted"], true);
    let failed = sys.wait_for(job, "skynet.job.step_failed.v1").await?;
    assert!(failed["data"]["error"].as_str().unwrap_or("").contains("nothing to commit"), "{failed}");
    sys.wait_for(job, "skynet.job.failed.v1").await?;
    sys.shutdown().await
}
