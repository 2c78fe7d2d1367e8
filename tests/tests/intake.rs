//! Submitting tasks as any NATS client would: structured and binary CloudEvents
//! published with a plain async-nats client, no SKYNET code on the sending side.

use async_nats::HeaderMap;
use skynet_system_tests::{INTAKE, System, WAIT, job_id, task};
use skynet_testkit::eventually;

#[tokio::test]
async fn a_task_published_by_any_client_opens_a_job_under_the_derived_id_once() -> anyhow::Result<()> {
    let sys = System::start().await?;
    let body = task(
        "t-1",
        serde_json::json!({"intent": "check git status in /tmp and run the tests", "requested_by": "alice", "project": "demo"}),
    );
    // Published twice, as a client retrying would (no Nats-Msg-Id: two stored submissions).
    sys.client.publish(INTAKE, body.clone().into()).await?;
    sys.client.publish(INTAKE, body.into()).await?;
    sys.client.flush().await?;

    let job = job_id(skynet_system_tests::SOURCE, "t-1");
    let events = eventually(WAIT, "the job's requested event", || async {
        let ev = sys.job_events(job).await.ok()?;
        (!ev.is_empty()).then_some(ev)
    })
    .await?;
    let first = &events[0];
    assert_eq!(first["type"], "skynet.job.requested.v1");
    assert_eq!(first["specversion"], "1.0");
    assert_eq!(first["subject"], job.to_string());
    assert_eq!(first["source"], "skynet/intake");
    assert_eq!(first["data"]["intent"], "check git status in /tmp and run the tests");
    // Said without a token, the requester is a claim, and recorded as one.
    assert_eq!(first["data"]["requested_by"], "alice (unverified)");

    // Both submissions consumed, still one job with one requested event.
    // (Stream state is an operator's view: the admin role reads it.)
    let admin = async_nats::jetstream::new(sys.nats.connect().await?);
    eventually(WAIT, "the intake to drain", || async {
        let info = admin.get_stream("SKYNET_INTAKE").await.ok()?.get_info().await.ok()?;
        (info.state.messages == 0).then_some(())
    })
    .await?;
    let requested = sys.job_events(job).await?.into_iter().filter(|e| e["type"] == "skynet.job.requested.v1").count();
    assert_eq!(requested, 1, "the same CloudEvent twice opens one job");

    // And the projector recorded it in the audit read model.
    let pool = sys.db.pool().await?;
    eventually(WAIT, "the audit row", || async {
        let n: i64 = sqlx::query_scalar("SELECT count(*) FROM audit_events WHERE subject = $1")
            .bind(job.to_string())
            .fetch_one(&pool)
            .await
            .ok()?;
        (n >= 1).then_some(())
    })
    .await?;
    sys.shutdown().await
}

#[tokio::test]
async fn binary_mode_submissions_are_accepted() -> anyhow::Result<()> {
    let sys = System::start().await?;
    let mut h = HeaderMap::new();
    h.insert("ce-specversion", "1.0");
    h.insert("ce-id", "bin-1");
    h.insert("ce-source", "tests/system");
    h.insert("ce-type", "skynet.task.requested.v1");
    h.insert("content-type", "application/json");
    sys.client.publish_with_headers(INTAKE, h, br#"{"intent":"show disk usage"}"#.as_slice().into()).await?;
    let job = job_id(skynet_system_tests::SOURCE, "bin-1");
    let events = eventually(WAIT, "the binary-mode job", || async {
        let ev = sys.job_events(job).await.ok()?;
        (!ev.is_empty()).then_some(ev)
    })
    .await?;
    assert_eq!(events[0]["data"]["intent"], "show disk usage");
    sys.shutdown().await
}

#[tokio::test]
async fn every_kind_of_bad_input_is_dead_lettered_with_its_reason_and_good_tasks_still_flow() -> anyhow::Result<()> {
    let sys = System::start().await?;
    let ce = |ty: &str, data: serde_json::Value| {
        serde_json::to_vec(
            &serde_json::json!({"specversion":"1.0","id":"bad","source":"tests/system","type":ty,"data":data}),
        )
        .expect("json")
    };
    let bad: Vec<(&str, Vec<u8>)> = vec![
        ("not_json", b"{ this is not json".to_vec()),
        ("not_cloudevent", br#"{"intent":"run the tests"}"#.to_vec()),
        ("invalid_data", ce("skynet.task.requested.v1", serde_json::json!({"working_dir": sys.project()}))),
        ("invalid_data", ce("skynet.task.requested.v1", serde_json::json!({"intent": ""}))),
        ("too_large", ce("skynet.task.requested.v1", serde_json::json!({"intent": "x".repeat(1024 * 1024 + 1)}))),
        ("unknown_type", ce("com.example.something.v1", serde_json::json!({"intent": "x"}))),
        ("unknown_type", ce("skynet.task.requested.v3", serde_json::json!({"intent": "x"}))),
    ];
    for (_, payload) in &bad {
        sys.client.publish(INTAKE, payload.clone().into()).await?;
    }
    sys.client.publish(INTAKE, task("good-after-bad", serde_json::json!({"intent": "list files"})).into()).await?;
    sys.client.flush().await?;

    let letters = eventually(WAIT, "every bad input in the DLQ", || async {
        let l = sys.read_all("SKYNET_DLQ", "skynet.dlq.>").await.ok()?;
        (l.len() >= bad.len()).then_some(l)
    })
    .await?;
    assert_eq!(letters.len(), bad.len(), "one dead letter per bad input, nothing else");
    for ((want_code, payload), (subject, headers, stored)) in bad.iter().zip(&letters) {
        assert_eq!(subject, "skynet.dlq.intake");
        let h = headers.as_ref().expect("dead letters carry headers");
        assert_eq!(h.get("Skynet-Dlq-Code").map(|v| v.as_str()), Some(*want_code));
        let reason = h.get("Skynet-Dlq-Reason").map(|v| v.as_str().to_string()).unwrap_or_default();
        assert!(!reason.is_empty(), "{want_code} has a reason");
        // A client's `skynet.intake.task` arrives on `skynet.intake.client` (see nats/roles.json).
        assert_eq!(h.get("Skynet-Dlq-Subject").map(|v| v.as_str()), Some("skynet.intake.client"));
        assert_eq!(stored.as_ref(), payload.as_slice(), "the original message is kept unchanged");
    }
    // The intake dead-letters first and then records the rejection (which names the
    // dead letter's sequence), so the rejections may still be on their way.
    let rejections = eventually(WAIT, "a rejection event per bad input", || async {
        let r = sys.read_all("SKYNET_EVENTS", "skynet.task.rejected").await.ok()?;
        (r.len() >= bad.len()).then_some(r)
    })
    .await?;
    assert_eq!(rejections.len(), bad.len(), "a rejection event per bad input, nothing else");
    let r: serde_json::Value = serde_json::from_slice(&rejections[0].2)?;
    assert_eq!(r["type"], "skynet.task.rejected.v1");
    assert_eq!(r["data"]["code"], "not_json");

    let job = job_id(skynet_system_tests::SOURCE, "good-after-bad");
    eventually(WAIT, "the valid task after the bad ones", || async {
        (!sys.job_events(job).await.ok()?.is_empty()).then_some(())
    })
    .await?;
    sys.shutdown().await
}
