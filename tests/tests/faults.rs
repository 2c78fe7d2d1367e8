//! Faults change nothing: poison never stops the pipeline (a NUL in an intent
//! is refused with its reason; a NUL that reaches the log is projected as
//! U+FFFD, and every later event too; output that is not text survives byte
//! for byte), a failing service is restarted while the others run on, and
//! the services carry on after the nats-server is killed and restarted.

use serde_json::json;
use skynet_system_tests::{System, WAIT};
use skynet_testkit::{NatsServer, TestDb, eventually};

async fn projected_status(sys: &System, job: uuid::Uuid) -> Option<String> {
    let pool = sys.db.pool().await.ok()?;
    sqlx::query_scalar("SELECT status FROM jobs WHERE id = $1").bind(job).fetch_optional(&pool).await.ok()?
}

#[tokio::test]
async fn a_nul_is_refused_at_the_door_and_survives_in_the_log_without_stopping_the_read_models() -> anyhow::Result<()> {
    let sys = System::start_with(NatsServer::start()?, TestDb::create().await?, |s| {
        s.executor.providers = vec!["local".into()];
    })
    .await?;
    // At the door: refused, with the reason, into the dead letters.
    sys.client
        .publish(
            skynet_system_tests::INTAKE,
            skynet_system_tests::task("nul-1", json!({"intent": "list\u{0}files"})).into(),
        )
        .await?;
    let reason = eventually(WAIT, "the NUL intent refused", || async {
        let letters = sys.read_all("SKYNET_DLQ", "skynet.dlq.intake").await.ok()?;
        letters.iter().find_map(|(_, h, _)| {
            let r = h.as_ref()?.get("Skynet-Dlq-Reason")?.to_string();
            r.contains("U+0000").then_some(r)
        })
    })
    .await?;
    assert!(reason.contains("intent"), "{reason}");

    // Past the door: a binary file's bytes ride on the step's result event.
    let project = std::path::PathBuf::from(sys.project());
    std::fs::write(project.join("blob.bin"), b"head\x00tail")?;
    let binary =
        sys.submit("nul-2", json!({"intent": "read the file ./blob.bin", "working_dir": sys.project()})).await?;
    let step = sys.wait_for(binary, "skynet.job.step_succeeded.v1").await?;
    assert_eq!(step["data"]["stdout"], "head\u{0}tail", "the log keeps the byte");
    // The projector writes it (as U+FFFD) and goes on with the next job.
    let after = sys.submit("nul-3", json!({"intent": "list files", "working_dir": sys.project()})).await?;
    for job in [binary, after] {
        eventually(WAIT, &format!("job {job} projected as succeeded"), || async {
            (projected_status(&sys, job).await.as_deref() == Some("succeeded")).then_some(())
        })
        .await?;
    }
    let pool = sys.db.pool().await?;
    let stdout: Option<String> = sqlx::query_scalar("SELECT stdout FROM steps WHERE job_id = $1")
        .bind(binary)
        .fetch_optional(&pool)
        .await?
        .flatten();
    assert_eq!(stdout.as_deref(), Some("head\u{FFFD}tail"));
    sys.shutdown().await
}

#[tokio::test]
async fn a_failing_service_is_restarted_while_the_others_run_on() -> anyhow::Result<()> {
    let sys = System::start().await?;
    let pool = sys.db.pool().await?;
    // Take a read model's table away: every batch the projector writes fails.
    sqlx::query("ALTER TABLE jobs RENAME TO jobs_away").execute(&pool).await?;
    let job = sys.submit("restart-1", json!({"intent": "list files", "working_dir": sys.project()})).await?;
    // The rest of the system runs on: the job completes in the log.
    sys.wait_for(job, "skynet.job.succeeded.v1").await?;
    // Put it back: the restarted projector catches up from its checkpoint.
    sqlx::query("ALTER TABLE jobs_away RENAME TO jobs").execute(&pool).await?;
    eventually(std::time::Duration::from_secs(60), "the read model to catch up", || async {
        (projected_status(&sys, job).await.as_deref() == Some("succeeded")).then_some(())
    })
    .await?;
    sys.shutdown().await
}

#[tokio::test]
async fn output_that_is_not_text_survives_byte_for_byte() -> anyhow::Result<()> {
    let sys = System::start_with(NatsServer::start()?, TestDb::create().await?, |s| {
        s.executor.providers = vec!["local".into()];
    })
    .await?;
    let bytes: Vec<u8> = vec![0xff, 0xfe, 0x00, b'x', 0x80, b'\n'];
    let project = std::path::PathBuf::from(sys.project());
    std::fs::write(project.join("raw.bin"), &bytes)?;
    let job = sys.submit("bytes-1", json!({"intent": "read the file ./raw.bin", "working_dir": sys.project()})).await?;
    let step = sys.wait_for(job, "skynet.job.step_succeeded.v1").await?;
    assert!(step["data"].get("stdout").is_none(), "not carried as (lossy) text: {step}");
    let key = format!("{}/stdout", step["data"]["output_ref"].as_str().unwrap_or_default());
    // Stored output is read by the API (and operators), not by clients.
    let js = async_nats::jetstream::new(sys.nats.connect_as("api").await?);
    let mut object = js.get_object_store("SKYNET_OUTPUT").await?.get(key.as_str()).await?;
    let mut stored = Vec::new();
    tokio::io::AsyncReadExt::read_to_end(&mut object, &mut stored).await?;
    assert_eq!(stored, bytes);
    sys.shutdown().await
}

#[tokio::test]
async fn the_services_carry_on_after_the_nats_server_is_killed_and_restarted() -> anyhow::Result<()> {
    let mut sys = System::start().await?;
    let before = sys.submit("restart-nats-1", json!({"intent": "list files", "working_dir": sys.project()})).await?;
    sys.wait_for(before, "skynet.job.succeeded.v1").await?;
    sys.nats.restart()?;
    // Every service reconnects and resumes its consumer on its own: a request
    // answered, then a whole job through intake, planner, policy, dispatcher,
    // scheduler and executor.
    eventually(WAIT, "the policy service to answer again", || async {
        let body = br#"{"action":"git_status"}"#.as_slice().into();
        sys.client.request("skynet.policy.check", body).await.ok().map(|_| ())
    })
    .await?;
    let after = sys.submit("restart-nats-2", json!({"intent": "list files", "working_dir": sys.project()})).await?;
    sys.wait_for(after, "skynet.job.succeeded.v1").await?;
    eventually(WAIT, "both jobs in the read models", || async {
        let done = [before, after].len();
        let mut n = 0;
        for job in [before, after] {
            n += usize::from(projected_status(&sys, job).await.as_deref() == Some("succeeded"));
        }
        (n == done).then_some(())
    })
    .await?;
    sys.shutdown().await
}
