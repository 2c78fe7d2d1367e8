//! The docker provider against a real Docker engine (`./dev test` starts one
//! and builds the `skynet-test/busybox` image offline): steps run in labelled
//! containers that are gone after the step ends, is cancelled, or its
//! executor dies.

mod common;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use common::*;
use serde_json::json;
use skynet_contract::executor::Health;
use skynet_executor::providers::StepRequest;
use skynet_executor::providers::docker::{Docker, LABEL_JOB, LABEL_LEASE};
use skynet_executor::{ProvidersConfig, orphans};
use skynet_testkit::eventually;

const IMAGE: &str = "skynet-test/busybox:latest";

fn docker() -> Docker {
    Docker { image: IMAGE.into(), network: Some("none".into()), ..Docker::default() }
}

/// Names of the containers (running or not) labelled with this job.
fn containers_of(job: &str) -> anyhow::Result<Vec<String>> {
    let out = Command::new("docker")
        .args(["ps", "-a", "--filter", &format!("label={LABEL_JOB}={job}"), "--format", "{{.Names}}"])
        .output()?;
    anyhow::ensure!(out.status.success(), "docker ps: {}", String::from_utf8_lossy(&out.stderr));
    Ok(String::from_utf8_lossy(&out.stdout).lines().map(str::to_owned).collect())
}

/// A container left running as a dead executor would leave it.
fn leave_container(job: &str, lease: u64) -> anyhow::Result<String> {
    let out = Command::new("docker")
        .args(["run", "-d", "--network", "none", "--label", &format!("{LABEL_JOB}={job}")])
        .args(["--label", &format!("{LABEL_LEASE}={lease}"), IMAGE, "sleep", "600"])
        .output()?;
    anyhow::ensure!(out.status.success(), "docker run: {}", String::from_utf8_lossy(&out.stderr));
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

#[tokio::test]
async fn health_names_the_engine_or_a_missing_cli() -> anyhow::Result<()> {
    let (health, message) = docker().health().await;
    assert_eq!(health, Health::Healthy, "{message}");
    assert!(message.starts_with("engine "), "{message}");
    let missing = Docker { bin: "/nonexistent/docker".into(), ..Docker::default() };
    let (h, m) = missing.health().await;
    assert_eq!((h, m.contains("docker CLI not found")), (Health::Unhealthy, true), "{m}");
    let req = StepRequest {
        job: "job-1".into(),
        step: 2,
        lease: 7,
        action: "git_status".into(),
        params: BTreeMap::new(),
        working_dir: PathBuf::from("/srv/app"),
        timeout: Duration::from_secs(5),
    };
    let (argv, name) = Docker::default().argv(&req).map_err(|e| anyhow::anyhow!(e))?;
    assert_eq!(&argv[..2], ["run", "--rm"]);
    assert!(argv.windows(2).any(|w| w == ["-v", "/srv/app:/workspace"]), "{argv:?}");
    assert!(argv.windows(2).any(|w| w == ["--label", "skynet.lease=7"]), "{argv:?}");
    assert!(argv.ends_with(&["ubuntu:22.04".into(), "git".into(), "status".into()]), "{argv:?}");
    assert!(name.starts_with("skynet-job1-2-"), "{name}");
    Ok(())
}

#[tokio::test]
async fn a_step_runs_in_a_container_with_the_working_dir_mounted_and_leaves_none() -> anyhow::Result<()> {
    let env = env().await?;
    let dir = tempfile::tempdir()?;
    std::fs::write(dir.path().join("marker-file.txt"), "x")?;
    let stop =
        start_executor(&env, "x-docker", ProvidersConfig { docker: Some(docker()), ..ProvidersConfig::default() })
            .await?;
    let wd = dir.path().display().to_string();
    let job = scheduled(
        &env,
        "docker-1",
        vec![step("execute_command", json!({"command": "echo in-container"})), step("list_directory", json!({}))],
        &wd,
        "docker",
        vec![],
    )
    .await?;
    assert_eq!(wait_end(&env, job).await?, "skynet.job.succeeded.v1");
    let out = output(&env, job).await?;
    assert!(out.contains("in-container"), "{out}");
    assert!(out.contains("marker-file.txt"), "the working dir is mounted: {out}");
    eventually(Duration::from_secs(10), "no container of the job", || async {
        containers_of(&job.to_string()).ok()?.is_empty().then_some(())
    })
    .await?;
    stop.cancel();
    Ok(())
}

#[tokio::test]
async fn a_cancelled_or_timed_out_step_leaves_no_container() -> anyhow::Result<()> {
    let env = env().await?;
    let dir = tempfile::tempdir()?;
    let stop =
        start_executor(&env, "x-docker-c", ProvidersConfig { docker: Some(docker()), ..ProvidersConfig::default() })
            .await?;
    let wd = dir.path().display().to_string();
    let job = scheduled(
        &env,
        "docker-c",
        vec![step("execute_command", json!({"command": "sleep 300"}))],
        &wd,
        "docker",
        vec![],
    )
    .await?;
    let id = job.to_string();
    eventually(Duration::from_secs(20), "the step's container", || async {
        (!containers_of(&id).ok()?.is_empty()).then_some(())
    })
    .await?;
    let cancel = skynet_job::Command::Cancel { by: "alice".into(), reason: "stop".into() };
    skynet_testkit::record(env.jobs.store(), job, "cancel", cancel).await?;
    assert_eq!(wait_end(&env, job).await?, "skynet.job.cancelled.v1");
    eventually(Duration::from_secs(10), "the container gone after cancel", || async {
        containers_of(&id).ok()?.is_empty().then_some(())
    })
    .await?;

    let job = scheduled(
        &env,
        "docker-t",
        vec![step("execute_command", json!({"command": "sleep 300", "timeout": 2}))],
        &wd,
        "docker",
        vec![],
    )
    .await?;
    assert_eq!(wait_end(&env, job).await?, "skynet.job.timed_out.v1");
    eventually(Duration::from_secs(10), "the container gone after a timeout", || async {
        containers_of(&job.to_string()).ok()?.is_empty().then_some(())
    })
    .await?;
    stop.cancel();
    Ok(())
}

#[tokio::test]
async fn containers_whose_lease_is_no_longer_current_are_removed() -> anyhow::Result<()> {
    let env = env().await?;
    // Job A: started by an executor that then died, its container still running.
    let a = scheduled(&env, "orphan-a", vec![step("git_status", json!({}))], "/tmp", "docker", vec![]).await?;
    let start = |executor: &str, lease| skynet_job::Command::Start { executor: executor.into(), lease };
    skynet_testkit::record(env.jobs.store(), a, "start1", start("dead", 1)).await?;
    leave_container(&a.to_string(), 1)?;
    // Job B: ended, with a container of its lease left behind.
    let b = scheduled(&env, "orphan-b", vec![step("git_status", json!({}))], "/tmp", "docker", vec![]).await?;
    let cancel = skynet_job::Command::Cancel { by: "alice".into(), reason: "stop".into() };
    skynet_testkit::record(env.jobs.store(), b, "cancel", cancel).await?;
    leave_container(&b.to_string(), 1)?;
    // A container of no job SKYNET knows (another installation's): never touched.
    let stranger = uuid::Uuid::new_v4().to_string();
    let stranger_container = leave_container(&stranger, 1)?;

    // While A's lease is current its container is left alone; B's goes.
    assert_eq!(orphans::sweep(&docker(), &env.jobs).await, 1);
    assert_eq!(containers_of(&b.to_string())?, Vec::<String>::new());
    assert_eq!(containers_of(&a.to_string())?.len(), 1);
    // Another executor takes A over (a newer lease): the old container goes.
    skynet_testkit::record(env.jobs.store(), a, "start2", start("alive", 2)).await?;
    assert_eq!(orphans::sweep(&docker(), &env.jobs).await, 1);
    assert_eq!(containers_of(&a.to_string())?, Vec::<String>::new());
    assert_eq!(containers_of(&stranger)?.len(), 1);
    Command::new("docker").args(["rm", "-f", &stranger_container]).output()?;

    // An executor does this at start-up: a leftover of an ended job is gone
    // without waiting for a sweep period.
    leave_container(&b.to_string(), 1)?;
    let stop =
        start_executor(&env, "x-sweep", ProvidersConfig { docker: Some(docker()), ..ProvidersConfig::default() })
            .await?;
    eventually(Duration::from_secs(10), "the leftover removed at start-up", || async {
        containers_of(&b.to_string()).ok()?.is_empty().then_some(())
    })
    .await?;
    stop.cancel();
    Ok(())
}
