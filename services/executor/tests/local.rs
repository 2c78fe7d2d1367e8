//! The local provider inside a running executor (the predecessor's scenario 43,
//! §18, adapted), its sandbox, timeouts, cancellation and artifacts.

mod common;

use std::time::Instant;

use common::*;
use serde_json::json;
use skynet_executor::ProvidersConfig;
use skynet_executor::providers::local::Local;
use skynet_job::Command;

fn local(roots: &[&std::path::Path]) -> ProvidersConfig {
    ProvidersConfig {
        local: Some(Local {
            allowed_roots: roots.iter().map(|p| p.display().to_string()).collect(),
            denied_paths: vec![],
            max_output: 1 << 20,
            ..Local::default()
        }),
        ..ProvidersConfig::default()
    }
}

fn git_repo(dir: &std::path::Path) -> anyhow::Result<()> {
    let ok = std::process::Command::new("git").args(["init", "-q"]).current_dir(dir).status()?.success();
    anyhow::ensure!(ok, "git init failed");
    Ok(())
}

#[tokio::test]
async fn git_status_listing_and_echo_succeed_with_output_and_unknown_actions_fail() -> anyhow::Result<()> {
    let env = env().await?;
    let root = tempfile::tempdir()?;
    git_repo(root.path())?;
    let wd = root.path().canonicalize()?.display().to_string();
    let stop = start_executor(&env, "x-local", local(&[root.path()])).await?;
    let job = scheduled(
        &env,
        "local-1",
        vec![
            step("git_status", json!({})),
            step("list_directory", json!({})),
            step("execute_command", json!({"command": "echo 'Hello from SKYNET'"})),
        ],
        &wd,
        "local",
        vec![],
    )
    .await?;
    assert_eq!(wait_end(&env, job).await?, "skynet.job.succeeded.v1");
    let evs = events(&env, job).await?;
    let outputs = output(&env, job).await?;
    assert!(outputs.contains("On branch") || outputs.contains("No commits yet"), "{outputs}");
    assert!(outputs.contains("Hello from SKYNET"), "{outputs}");
    let last = evs.iter().rfind(|(t, _)| t.ends_with("step_succeeded.v1")).map(|(_, d)| d.clone()).unwrap_or_default();
    let stored = step_stdout(&env, &last).await?;
    assert_eq!(stored, "Hello from SKYNET\n");

    // Scheduled here anyway (this host has no desktop and no wmctrl): the step
    // fails saying so, rather than running nothing.
    let job = scheduled(&env, "local-2", vec![step("close_app", json!({"app": "x"}))], &wd, "local", vec![]).await?;
    assert_eq!(wait_end(&env, job).await?, "skynet.job.failed.v1");
    let failed = wait_for(&env, job, "failed").await?;
    let reason = failed["reason"].as_str().unwrap_or("");
    assert!(reason.contains("close_app is not available on this executor"), "{failed}");
    assert!(!events(&env, job).await?.iter().any(|(t, _)| t.ends_with(".started.v1")), "nothing ran");
    stop.cancel();
    Ok(())
}

#[tokio::test]
async fn working_directories_outside_the_sandbox_are_refused_also_through_symlinks_and_dotdot() -> anyhow::Result<()> {
    let env = env().await?;
    let base = tempfile::tempdir()?;
    let root = base.path().join("root");
    std::fs::create_dir_all(root.join("inside"))?;
    std::os::unix::fs::symlink("/etc", root.join("escape"))?;
    let stop = start_executor(&env, "x-sandbox", local(&[&root])).await?;
    let tries = [
        ("/etc".to_owned(), "abs"),
        (root.join("escape").display().to_string(), "symlink"),
        (root.join("inside/../../").display().to_string(), "dotdot"),
    ];
    for (dir, name) in tries {
        let job =
            scheduled(&env, &format!("sandbox-{name}"), vec![step("list_directory", json!({}))], &dir, "local", vec![])
                .await?;
        assert_eq!(wait_end(&env, job).await?, "skynet.job.failed.v1", "{name}");
        let f = wait_for(&env, job, "step_failed").await?;
        assert!(f["error"].as_str().unwrap_or("").contains("working directory not allowed"), "{name}: {f}");
    }
    let ok = root.join("inside").canonicalize()?.display().to_string();
    let job = scheduled(&env, "sandbox-ok", vec![step("list_directory", json!({}))], &ok, "local", vec![]).await?;
    assert_eq!(wait_end(&env, job).await?, "skynet.job.succeeded.v1");
    stop.cancel();
    Ok(())
}

#[tokio::test]
async fn a_cancel_stops_a_running_sleep_within_two_seconds() -> anyhow::Result<()> {
    let env = env().await?;
    let root = tempfile::tempdir()?;
    let wd = root.path().canonicalize()?.display().to_string();
    let stop = start_executor(&env, "x-cancel", local(&[root.path()])).await?;
    let job = scheduled(
        &env,
        "cancel-1",
        // 31, not 30: no other test runs this exact command, so pgrep below is ours.
        vec![step("execute_command", json!({"command": "sleep 31"}))],
        &wd,
        "local",
        vec![],
    )
    .await?;
    wait_for(&env, job, "step_started").await?;
    let asked = Instant::now();
    let cancel = Command::Cancel { by: "alice".into(), reason: "stop".into() };
    skynet_testkit::record(env.jobs.store(), job, "cancel", cancel.clone()).await?;
    assert_eq!(wait_end(&env, job).await?, "skynet.job.cancelled.v1");
    let took = asked.elapsed();
    assert!(took.as_secs_f64() < 2.0, "cancel took {took:?}");
    let f = wait_for(&env, job, "step_failed").await?;
    assert_eq!(f["error"], "cancelled");
    // The process group is gone: no `sleep 30` of ours survives.
    let ps = std::process::Command::new("pgrep").args(["-f", "^sleep 31$"]).output()?;
    assert!(String::from_utf8_lossy(&ps.stdout).trim().is_empty(), "sleep still running");
    stop.cancel();
    Ok(())
}

#[tokio::test]
async fn a_step_over_its_timeout_ends_timed_out() -> anyhow::Result<()> {
    let env = env().await?;
    let root = tempfile::tempdir()?;
    let wd = root.path().canonicalize()?.display().to_string();
    let stop = start_executor(&env, "x-timeout", local(&[root.path()])).await?;
    // The command's own `timeout` parameter is the tightest of the four levels.
    let job = scheduled(
        &env,
        "timeout-1",
        vec![step("execute_command", json!({"command": "sleep 30", "timeout": 1}))],
        &wd,
        "local",
        vec![],
    )
    .await?;
    let started = Instant::now();
    assert_eq!(wait_end(&env, job).await?, "skynet.job.timed_out.v1");
    assert!(started.elapsed().as_secs() < 10);
    let t = wait_for(&env, job, "timed_out").await?;
    assert_eq!((t["scope"].as_str(), t["step"].as_u64(), t["limit_secs"].as_u64()), (Some("step"), Some(0), Some(1)));
    stop.cancel();
    Ok(())
}

#[tokio::test]
async fn a_failed_step_fails_the_job_unless_marked_continue_on_error() -> anyhow::Result<()> {
    let env = env().await?;
    let root = tempfile::tempdir()?;
    let wd = root.path().canonicalize()?.display().to_string();
    let stop = start_executor(&env, "x-coe", local(&[root.path()])).await?;
    let job = scheduled(
        &env,
        "coe-1",
        vec![step("execute_command", json!({"command": "false"})), step("list_directory", json!({}))],
        &wd,
        "local",
        vec![],
    )
    .await?;
    assert_eq!(wait_end(&env, job).await?, "skynet.job.failed.v1");
    let results: Vec<_> = events(&env, job)
        .await?
        .into_iter()
        .filter(|(t, _)| t.ends_with("step_failed.v1") || t.ends_with("step_succeeded.v1"))
        .map(|(_, d)| d["step"].clone())
        .collect();
    assert_eq!(results, [json!(0)], "the second step never ran");

    let mut tolerated = step("execute_command", json!({"command": "false"}));
    tolerated.2 = true;
    let job =
        scheduled(&env, "coe-2", vec![tolerated, step("list_directory", json!({}))], &wd, "local", vec![]).await?;
    assert_eq!(wait_end(&env, job).await?, "skynet.job.succeeded.v1");
    let done = wait_for(&env, job, "succeeded").await?;
    assert_eq!(done["tolerated_failures"], json!([0]));
    stop.cancel();
    Ok(())
}

#[tokio::test]
async fn a_job_cancelled_before_it_runs_never_starts() -> anyhow::Result<()> {
    let env = env().await?;
    let root = tempfile::tempdir()?;
    let wd = root.path().canonicalize()?.display().to_string();
    let job = scheduled(&env, "early-1", vec![step("list_directory", json!({}))], &wd, "local", vec![]).await?;
    let cancel = Command::Cancel { by: "alice".into(), reason: "not now".into() };
    skynet_testkit::record(env.jobs.store(), job, "cancel", cancel.clone()).await?;
    let stop = start_executor(&env, "x-early", local(&[root.path()])).await?;
    // A later job on the same executor finishing proves the first was consumed.
    let probe = scheduled(&env, "early-2", vec![step("list_directory", json!({}))], &wd, "local", vec![]).await?;
    assert_eq!(wait_end(&env, probe).await?, "skynet.job.succeeded.v1");
    let types: Vec<_> = events(&env, job).await?.into_iter().map(|(t, _)| t).collect();
    assert_eq!(types.last().map(String::as_str), Some("skynet.job.cancelled.v1"));
    assert!(!types.iter().any(|t| t.ends_with("started.v1")), "{types:?}");
    stop.cancel();
    Ok(())
}

#[tokio::test]
async fn artifacts_named_by_the_plan_are_stored_with_size_type_and_checksum() -> anyhow::Result<()> {
    let env = env().await?;
    let root = tempfile::tempdir()?;
    let wd = root.path().canonicalize()?.display().to_string();
    let stop = start_executor(&env, "x-artifacts", local(&[root.path()])).await?;
    let job = scheduled(
        &env,
        "art-1",
        vec![step("execute_command", json!({"command": ["sh", "-c", "echo artifact > report.txt"]}))],
        &wd,
        "local",
        vec!["report.txt".into(), "missing.bin".into(), "../escape.txt".into()],
    )
    .await?;
    assert_eq!(wait_end(&env, job).await?, "skynet.job.succeeded.v1");
    let a = wait_for(&env, job, "artifact_stored").await?;
    assert_eq!(a["name"], "report.txt");
    assert_eq!(a["size_bytes"], 9);
    assert_eq!(a["content_type"], "text/plain");
    // sha256("artifact\n")
    assert_eq!(
        a["sha256"], "5b3513f580c8397212ff2c8f459c199efc0c90e4354a5f3533adf0a3fff3a530",
        "sha256 of \"artifact\\n\""
    );
    assert_eq!(object_text(&env, "SKYNET_ARTIFACTS", a["key"].as_str().unwrap_or("")).await?, "artifact\n");
    let stored = events(&env, job).await?.iter().filter(|(t, _)| t.ends_with("artifact_stored.v1")).count();
    assert_eq!(stored, 1, "missing and escaping artifacts are not stored");
    stop.cancel();
    Ok(())
}

#[tokio::test]
async fn a_job_failed_elsewhere_stops_its_step_and_runs_nothing_more() -> anyhow::Result<()> {
    let env = env().await?;
    let root = tempfile::tempdir()?;
    let wd = root.path().canonicalize()?.display().to_string();
    let stop = start_executor(&env, "x-failed", local(&[root.path()])).await?;
    let job = scheduled(
        &env,
        "failed-elsewhere",
        // 33: no other test runs this exact command, so pgrep below is ours.
        vec![
            step("execute_command", json!({"command": "sleep 33"})),
            step("execute_command", json!({"command": "touch after-the-end"})),
        ],
        &wd,
        "local",
        vec![],
    )
    .await?;
    wait_for(&env, job, "step_started").await?;
    // The watchdog (or any owner of `failed`) ends the job while the step runs.
    let fail =
        Command::Fail { stage: skynet_contract::job::Stage::Execution, reason: "watchdog: test".into(), step: None };
    skynet_testkit::record(env.jobs.store(), job, "watchdog", fail).await?;
    skynet_testkit::eventually(std::time::Duration::from_secs(5), "the step killed", || async {
        let ps = std::process::Command::new("pgrep").args(["-f", "^sleep 33$"]).output().ok()?;
        String::from_utf8_lossy(&ps.stdout).trim().is_empty().then_some(())
    })
    .await?;
    // Nothing ran after it and nothing was recorded after `failed`.
    let types: Vec<String> = events(&env, job).await?.into_iter().map(|(t, _)| t).collect();
    assert_eq!(types.last().map(String::as_str), Some("skynet.job.failed.v1"), "{types:?}");
    assert!(!root.path().join("after-the-end").exists(), "the next step never ran");
    stop.cancel();
    Ok(())
}

#[tokio::test]
async fn files_and_directories_are_written_inside_the_sandbox_and_never_through_a_link() -> anyhow::Result<()> {
    let env = env().await?;
    let root = tempfile::tempdir()?;
    let outside = tempfile::tempdir()?;
    let wd = root.path().canonicalize()?;
    let at = |p: &str| wd.join(p).display().to_string();
    let stop = start_executor(&env, "x-files", local(&[root.path()])).await?;
    let run = |id: &str, steps| {
        let (env, wd) = (&env, wd.display().to_string());
        let id = id.to_owned();
        async move {
            let job = scheduled(env, &id, steps, &wd, "local", vec![]).await?;
            let end = wait_end(env, job).await?;
            anyhow::Ok((job, end))
        }
    };
    // A directory, a file in it, then more appended.
    let (_, end) = run(
        "files-1",
        vec![
            step("create_directory", json!({"directory": at("build")})),
            step("file_write", json!({"file": at("build/notes.txt"), "content": "hello\n"})),
            step("file_write", json!({"file": at("build/notes.txt"), "content": "more\n", "mode": "append"})),
        ],
    )
    .await?;
    assert_eq!(end, "skynet.job.succeeded.v1");
    assert_eq!(std::fs::read_to_string(wd.join("build/notes.txt"))?, "hello\nmore\n");
    // No temporary file is left beside it.
    assert_eq!(std::fs::read_dir(wd.join("build"))?.count(), 1);
    // Create does not replace; overwrite does.
    let (job, end) =
        run("files-2", vec![step("file_write", json!({"file": at("build/notes.txt"), "content": "x"}))]).await?;
    assert_eq!(end, "skynet.job.failed.v1");
    assert!(wait_for(&env, job, "step_failed").await?["error"].as_str().unwrap_or("").contains("already exists"));
    let overwrite = json!({"file": at("build/notes.txt"), "content": "new", "mode": "overwrite"});
    assert_eq!(run("files-3", vec![step("file_write", overwrite)]).await?.1, "skynet.job.succeeded.v1");
    assert_eq!(std::fs::read_to_string(wd.join("build/notes.txt"))?, "new");
    // Through a symbolic link to outside the sandbox: refused, nothing written there.
    let target = outside.path().join("target.txt");
    std::os::unix::fs::symlink(&target, wd.join("link.txt"))?;
    let through = json!({"file": at("link.txt"), "content": "pwned", "mode": "overwrite"});
    let (job, end) = run("files-4", vec![step("file_write", through)]).await?;
    assert_eq!(end, "skynet.job.failed.v1");
    let error = wait_for(&env, job, "step_failed").await?["error"].as_str().unwrap_or("").to_owned();
    assert!(error.contains("symbolic link"), "{error}");
    assert!(!target.exists(), "nothing written through the link");
    // Outside the roots: refused.
    let out = json!({"file": outside.path().join("x.txt").display().to_string(), "content": "x"});
    assert_eq!(run("files-5", vec![step("file_write", out)]).await?.1, "skynet.job.failed.v1");
    assert!(!outside.path().join("x.txt").exists());
    stop.cancel();
    Ok(())
}
