//! The rest of the catalog through the whole pipeline, as a user asks for it:
//! an archive stored as an artifact, a dev server that answers and is gone
//! when the job ends, a question to the model, nested directories, and a push
//! to a real remote — each planned by the rule planner from plain words, with
//! the approval its risk requires.

use std::io::Read;

use serde_json::json;
use sha2::Digest;
use skynet_system_tests::{System, token};
use skynet_testkit::{NatsServer, TestDb};

async fn local() -> anyhow::Result<System> {
    System::start_with(NatsServer::start()?, TestDb::create().await?, |s| {
        s.executor.providers = vec!["local".into()];
    })
    .await
}

async fn approve(sys: &System, job: uuid::Uuid) -> anyhow::Result<()> {
    sys.wait_for(job, "skynet.job.policy_decided.v1").await?;
    let r = sys.request("skynet.cmd.job.approve", json!({"job_id": job, "token": token("bob")})).await?;
    anyhow::ensure!(r["accepted"] == true, "approval refused: {r}");
    Ok(())
}

#[tokio::test]
async fn zip_the_project_stores_an_archive_that_honours_gitignore_and_follows_no_link() -> anyhow::Result<()> {
    let sys = local().await?;
    let project = std::path::PathBuf::from(sys.project());
    std::fs::write(project.join(".gitignore"), "*.log\n")?;
    std::fs::write(project.join("debug.log"), "noise")?;
    let secret = tempfile::NamedTempFile::new()?;
    std::fs::write(secret.path(), "outside the sandbox")?;
    std::os::unix::fs::symlink(secret.path(), project.join("leak"))?;

    let job = sys.submit("zip-1", json!({"intent": "zip the project", "working_dir": sys.project()})).await?;
    let decided = sys.wait_for(job, "skynet.job.policy_decided.v1").await?;
    assert_eq!(
        (decided["data"]["risk"].as_str(), decided["data"]["requires_approval"].as_bool()),
        (Some("WRITE"), Some(true))
    );
    approve(&sys, job).await?;
    sys.wait_for(job, "skynet.job.succeeded.v1").await?;
    let stored = sys.wait_for(job, "skynet.job.artifact_stored.v1").await?;
    let name = format!("{}.zip", project.file_name().map(|n| n.to_string_lossy()).unwrap_or_default());
    assert_eq!(stored["data"]["name"], name.as_str());
    let listing = sys.step_stdout(job, 0).await?;
    assert!(listing.contains("skipped (symbolic link, not followed): leak"), "{listing}");

    // The stored bytes are what the event says, and the archive what the project holds.
    let bytes = sys.object("SKYNET_ARTIFACTS", stored["data"]["key"].as_str().unwrap_or_default()).await?;
    assert_eq!(stored["data"]["size_bytes"], bytes.len());
    assert_eq!(stored["data"]["sha256"], hex::encode(sha2::Sha256::digest(&bytes)));
    let mut archive = zip::ZipArchive::new(std::io::Cursor::new(bytes))?;
    let mut names: Vec<String> = archive.file_names().map(str::to_owned).collect();
    names.sort();
    assert_eq!(names, [".gitignore", "Makefile", "requirements.txt"]);
    let mut makefile = String::new();
    archive.by_name("Makefile")?.read_to_string(&mut makefile)?;
    assert_eq!(makefile, std::fs::read_to_string(project.join("Makefile"))?);
    sys.shutdown().await
}

#[tokio::test]
async fn the_dev_server_answers_during_the_job_and_is_gone_when_it_ends() -> anyhow::Result<()> {
    let sys = local().await?;
    let project = std::path::PathBuf::from(sys.project());
    // The project says how its dev server starts (`make dev`), on the port it is told.
    std::fs::write(project.join("Makefile"), "dev:\n\t@exec python3 -m http.server $$PORT --bind 127.0.0.1\n")?;
    std::fs::write(project.join("index.html"), "<p>hello</p>")?;
    let port = skynet_bus::server::free_port()?;

    let intent = format!("start the dev server on port {port}");
    let job = sys.submit("dev-1", json!({"intent": intent, "working_dir": sys.project()})).await?;
    let decided = sys.wait_for(job, "skynet.job.policy_decided.v1").await?;
    assert_eq!(decided["data"]["requires_approval"], false, "READ_ONLY runs without a person: {decided}");
    let dispatched = sys.wait_for(job, "skynet.job.dispatched.v1").await?;
    assert_eq!(dispatched["data"]["spec"]["steps"][0]["params"]["project_command"], json!(["make", "dev"]));
    sys.wait_for(job, "skynet.job.succeeded.v1").await?;
    let out = sys.step_stdout(job, 0).await?;
    assert!(out.contains(&format!("dev server answering on localhost:{port}: HTTP/1.0 200 OK")), "{out}");
    // Stopped before the job was recorded as finished: nothing listens now.
    assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_err(), "the dev server outlived its job");
    sys.shutdown().await
}

#[tokio::test]
async fn a_dev_server_that_exits_at_once_fails_the_step_with_its_output() -> anyhow::Result<()> {
    let sys = local().await?;
    let project = std::path::PathBuf::from(sys.project());
    std::fs::write(project.join("Makefile"), "dev:\n\t@echo no such framework; exit 3\n")?;
    let port = skynet_bus::server::free_port()?;
    let intent = format!("start the dev server on port {port}");
    let job = sys.submit("dev-2", json!({"intent": intent, "working_dir": sys.project()})).await?;
    let failed = sys.wait_for(job, "skynet.job.step_failed.v1").await?;
    let error = failed["data"]["error"].as_str().unwrap_or_default();
    assert!(error.contains(&format!("exited before answering on port {port}")), "{failed}");
    assert!(sys.step_stdout(job, 0).await?.contains("no such framework"));
    sys.wait_for(job, "skynet.job.failed.v1").await?;
    sys.shutdown().await
}

#[tokio::test]
async fn ask_the_model_calls_the_configured_endpoint_once_and_the_reply_is_the_output() -> anyhow::Result<()> {
    use axum::Json;
    use axum::routing::post;
    // An OpenAI-compatible endpoint we cannot run here, spoken by a real HTTP server.
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::<serde_json::Value>::new()));
    let log = seen.clone();
    let app = axum::Router::new().route(
        "/v1/chat/completions",
        post(move |Json(body): Json<serde_json::Value>| {
            let log = log.clone();
            async move {
                if let Ok(mut l) = log.lock() {
                    l.push(body);
                }
                Json(json!({"choices": [{"message": {"role": "assistant", "content": "The README says hello."}}]}))
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/v1", listener.local_addr()?);
    tokio::spawn(async move { axum::serve(listener, app).await });
    let sys = System::start_with(NatsServer::start()?, TestDb::create().await?, move |s| {
        s.executor.providers = vec!["local".into()];
        s.executor.chat_base_url = Some(url);
        s.executor.chat_model = "tiny".into();
    })
    .await?;
    let intent = "ask the model to summarise the README";
    let job = sys.submit("chat-1", json!({"intent": intent, "working_dir": sys.project()})).await?;
    sys.wait_for(job, "skynet.job.succeeded.v1").await?;
    assert_eq!(sys.step_stdout(job, 0).await?, "The README says hello.\n");
    let calls = seen.lock().map(|l| l.clone()).unwrap_or_default();
    assert_eq!(calls.len(), 1, "{calls:?}");
    assert_eq!(calls[0]["model"], "tiny");
    assert_eq!(calls[0]["messages"], json!([{"role": "user", "content": "summarise the README"}]));
    sys.shutdown().await
}

#[tokio::test]
async fn nested_directories_after_one_approval_and_a_push_after_the_admin_confirmation() -> anyhow::Result<()> {
    let sys = local().await?;
    let project = std::path::PathBuf::from(sys.project());
    let job = sys
        .submit("dirs-1", json!({"intent": "create a directory named out/logs/today", "working_dir": sys.project()}))
        .await?;
    approve(&sys, job).await?;
    sys.wait_for(job, "skynet.job.succeeded.v1").await?;
    assert!(project.join("out/logs/today").is_dir());

    // A real remote: a bare repository next to the project.
    let remote = tempfile::tempdir()?;
    let git = |dir: &std::path::Path, args: &[&str]| -> anyhow::Result<String> {
        let o = std::process::Command::new("git")
            .args(["-c", "user.name=t", "-c", "user.email=t@t", "-c", "init.defaultBranch=main"])
            .args(args)
            .current_dir(dir)
            .output()?;
        anyhow::ensure!(o.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&o.stderr));
        Ok(String::from_utf8_lossy(&o.stdout).trim().to_owned())
    };
    git(remote.path(), &["init", "--bare", "-q"])?;
    git(&project, &["init", "-q"])?;
    git(&project, &["add", "Makefile"])?;
    git(&project, &["commit", "-q", "-m", "first"])?;
    git(&project, &["remote", "add", "origin", &remote.path().display().to_string()])?;
    let job = sys.submit("push-1", json!({"intent": "push to origin main", "working_dir": sys.project()})).await?;
    assert_eq!(sys.wait_for(job, "skynet.job.policy_decided.v1").await?["data"]["risk"], "ADMIN");
    let phrase = format!("execute {}", &job.to_string()[..8]);
    let r = sys
        .request("skynet.cmd.job.approve", json!({"job_id": job, "token": token("bob"), "confirmation": phrase}))
        .await?;
    assert_eq!(r["accepted"], true, "{r}");
    sys.wait_for(job, "skynet.job.succeeded.v1").await?;
    assert_eq!(git(remote.path(), &["log", "--format=%s", "main"])?, "first");
    sys.shutdown().await
}
