//! The trust boundary at the broker, tried the way an attacker would: a client
//! forging an approval, deleting the log, steering the executors' consumer or
//! the heartbeats; one service writing another's events; an event under the
//! wrong `source` or one that does not decode in a job's log. Each attempt is
//! refused by the server or dead-lettered, and nothing runs that should not.

// Forging raw publishes is what these tests are about.
#![allow(clippy::disallowed_methods)]

use std::time::Duration;

use async_nats::HeaderMap;
use serde_json::json;
use skynet_system_tests::{INTAKE, System, WAIT, job_id, task};
use skynet_testkit::eventually;
use uuid::Uuid;

const DECIDED: &str = "skynet.job.policy_decided.v1";

/// A structured CloudEvent for `job`, as the policy service would write it.
fn forged(job: Uuid, kind: &str, source: &str, data: serde_json::Value) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "specversion": "1.0", "id": format!("forged-{kind}-{job}"), "source": source,
        "type": format!("skynet.job.{kind}.v1"), "subject": job.to_string(),
        "datacontenttype": "application/json", "data": data
    }))
    .unwrap_or_default()
}

/// Waits until the server has logged a refusal of `subject` (the refused
/// message was dropped there, so nothing can be stored later).
async fn refused(sys: &System, subject: &str) -> anyhow::Result<()> {
    let needle = format!("\"{subject}\"");
    eventually(WAIT, &format!("the server to refuse {subject}"), || async {
        sys.nats.violations().iter().any(|v| v.contains(&needle)).then_some(())
    })
    .await
}

/// A job waiting for a person's approval.
async fn awaiting(sys: &System, id: &str) -> anyhow::Result<Uuid> {
    let job = sys.submit(id, json!({"intent": "build the project", "working_dir": sys.project()})).await?;
    assert_eq!(sys.wait_for(job, DECIDED).await?["data"]["requires_approval"], true);
    Ok(job)
}

async fn status(sys: &System, job: Uuid) -> anyhow::Result<Vec<String>> {
    sys.types(job).await
}

#[tokio::test]
async fn a_client_cannot_forge_an_approval() -> anyhow::Result<()> {
    let sys = System::start().await?;
    let job = awaiting(&sys, "forge-1").await?;
    let subject = format!("skynet.job.{job}.approved");
    let event = forged(job, "approved", "skynet/policy", json!({"approver": "mallory"}));
    // Through JetStream (waiting for a stored ack) and as a plain publish.
    let js = sys.js.clone();
    let stored = tokio::time::timeout(Duration::from_secs(3), async {
        js.publish(subject.clone(), event.clone().into()).await?.await.map_err(anyhow::Error::from)
    })
    .await;
    assert!(!matches!(stored, Ok(Ok(_))), "the log acknowledged a forged approval: {stored:?}");
    sys.client.publish(subject.clone(), event.into()).await?;
    sys.client.flush().await?;
    refused(&sys, &subject).await?;

    // Nothing stored, and the job still waits for a person; a real approval works.
    let types = status(&sys, job).await?;
    assert!(!types.iter().any(|t| t == "skynet.job.approved.v1"), "{types:?}");
    assert_eq!(types.last().map(String::as_str), Some(DECIDED));
    let reply = sys.request("skynet.cmd.job.approve", json!({"job_id": job, "token": "token-bob"})).await?;
    assert_eq!(reply["accepted"], true, "{reply}");
    let approved = sys.wait_for(job, "skynet.job.approved.v1").await?;
    assert_eq!(approved["data"]["approver"], "bob");
    sys.shutdown().await
}

#[tokio::test]
async fn a_client_cannot_manage_streams_consumers_heartbeats_or_deadlines() -> anyhow::Result<()> {
    let sys = System::start().await?;
    let job = awaiting(&sys, "manage-1").await?;
    let js = &sys.js;
    let quick = Duration::from_secs(2);
    let denied = |what: &str, ok: bool| assert!(!ok, "a client could {what}");

    let del = tokio::time::timeout(quick, js.delete_stream("SKYNET_EVENTS")).await;
    denied("delete the log", matches!(del, Ok(Ok(_))));
    refused(&sys, "$JS.API.STREAM.DELETE.SKYNET_EVENTS").await?;

    let purge = sys.client.request("$JS.API.STREAM.PURGE.SKYNET_EVENTS", "{}".into());
    denied("purge the log", matches!(tokio::time::timeout(quick, purge).await, Ok(Ok(_))));
    refused(&sys, "$JS.API.STREAM.PURGE.SKYNET_EVENTS").await?;

    // Re-pointing the executors' shared consumer at one job would starve the rest.
    let hijack = json!({"stream_name": "SKYNET_EVENTS", "config": {"durable_name": "executor", "name": "executor",
        "filter_subject": format!("skynet.job.{job}.scheduled"), "ack_policy": "explicit", "deliver_policy": "all"}});
    let create = format!("$JS.API.CONSUMER.CREATE.SKYNET_EVENTS.executor.skynet.job.{job}.scheduled");
    let r = sys.client.request(create.clone(), hijack.to_string().into());
    denied("replace the executor consumer", matches!(tokio::time::timeout(quick, r).await, Ok(Ok(_))));
    refused(&sys, &create).await?;
    let ephemeral = sys.client.request("$JS.API.CONSUMER.CREATE.SKYNET_EVENTS", hijack.to_string().into());
    denied("create a consumer on the log", matches!(tokio::time::timeout(quick, ephemeral).await, Ok(Ok(_))));

    // Heartbeats steer the scheduler; deadlines cancel jobs.
    for (subject, body) in [
        ("$KV.SKYNET_EXECUTORS.executor-fake", json!({"providers": ["local"]}).to_string()),
        (&*format!("$KV.SKYNET_APPROVALS.{job}"), "0".to_owned()),
    ] {
        sys.client.publish(subject.to_owned(), body.into()).await?;
        sys.client.flush().await?;
        refused(&sys, subject).await?;
    }

    // The server still holds everything as it was (read with the admin role).
    let admin = async_nats::jetstream::new(sys.nats.connect().await?);
    let consumer: async_nats::jetstream::consumer::PullConsumer =
        admin.get_stream("SKYNET_EVENTS").await?.get_consumer("executor").await.map_err(|e| anyhow::anyhow!(e))?;
    assert_eq!(consumer.cached_info().config.filter_subject, "skynet.job.*.scheduled");
    let kv = admin.get_key_value("SKYNET_EXECUTORS").await?;
    assert!(kv.get("executor-fake").await?.is_none(), "no forged heartbeat");
    let deadlines = admin.get_key_value("SKYNET_APPROVALS").await?;
    assert_ne!(deadlines.get(job.to_string()).await?.as_deref(), Some(b"0".as_slice()), "deadline untouched");
    assert!(!status(&sys, job).await?.is_empty(), "the log is still there");
    sys.shutdown().await
}

#[tokio::test]
async fn one_service_cannot_write_anothers_events() -> anyhow::Result<()> {
    let sys = System::start().await?;
    let job = awaiting(&sys, "cross-1").await?;
    for (role, kind, source) in
        [("executor", "approved", "skynet/policy"), ("planner", "dispatched", "skynet/dispatcher")]
    {
        let conn = sys.nats.connect_as(role).await?;
        let subject = format!("skynet.job.{job}.{kind}");
        conn.publish(subject.clone(), forged(job, kind, source, json!({})).into()).await?;
        conn.flush().await?;
        refused(&sys, &subject).await?;
    }
    let types = status(&sys, job).await?;
    assert_eq!(types.last().map(String::as_str), Some(DECIDED), "{types:?}");
    sys.shutdown().await
}

/// The dead letters of `origin` with their codes.
async fn dead_letters(sys: &System, origin: &str) -> anyhow::Result<Vec<(String, String, String)>> {
    let letters = sys.read_all("SKYNET_DLQ", &format!("skynet.dlq.{origin}")).await?;
    Ok(letters
        .into_iter()
        .map(|(_, h, _)| {
            let get = |k: &str| h.as_ref().and_then(|h| h.get(k)).map(|v| v.to_string()).unwrap_or_default();
            (get("Skynet-Dlq-Code"), get("Skynet-Dlq-Subject"), get("Skynet-Dlq-Reason"))
        })
        .collect())
}

#[tokio::test]
async fn an_event_under_the_wrong_source_is_dead_lettered_and_never_folded() -> anyhow::Result<()> {
    let sys = System::start().await?;
    // An operator's looser permissions (here: the admin role) let an approval
    // written by "the executor" into the log.
    let job = awaiting(&sys, "source-1").await?;
    let admin = async_nats::jetstream::new(sys.nats.connect().await?);
    let subject = format!("skynet.job.{job}.approved");
    admin
        .publish(subject.clone(), forged(job, "approved", "skynet/executor", json!({"approver": "x"})).into())
        .await?
        .await?;

    let letter = eventually(WAIT, "the dispatcher to dead-letter it", || async {
        dead_letters(&sys, "dispatcher").await.ok()?.into_iter().find(|(_, s, _)| *s == subject)
    })
    .await?;
    assert_eq!(letter.0, "wrong_source");
    assert!(letter.2.contains("skynet/policy"), "the reason names the owner: {}", letter.2);
    // Not folded: no dispatch; the next service to touch the job ends it.
    let reply = sys.request("skynet.cmd.job.approve", json!({"job_id": job, "token": "token-bob"})).await?;
    assert_eq!(reply["accepted"], false, "{reply}");
    let failed = sys.wait_for(job, "skynet.job.failed.v1").await?;
    assert_eq!(failed["data"]["stage"], "integrity");
    assert!(!sys.types(job).await?.iter().any(|t| t == "skynet.job.dispatched.v1"));
    sys.shutdown().await
}

#[tokio::test]
async fn an_undecodable_event_fails_its_job_and_the_services_keep_running() -> anyhow::Result<()> {
    let sys = System::start().await?;
    let job = awaiting(&sys, "garbage-1").await?;
    let admin = async_nats::jetstream::new(sys.nats.connect().await?);
    admin.publish(format!("skynet.job.{job}.denied"), "{not json".into()).await?.await?;

    let reply = sys.request("skynet.cmd.job.approve", json!({"job_id": job, "token": "token-bob"})).await?;
    assert_eq!(reply["accepted"], false, "{reply}");
    let failed = sys.wait_for(job, "skynet.job.failed.v1").await?;
    assert_eq!(failed["data"]["stage"], "integrity");
    let reason = failed["data"]["reason"].as_str().unwrap_or_default();
    assert!(reason.contains("skipped at sequence") && reason.contains("CloudEvent"), "{reason}");

    // The pipeline goes on for everyone else.
    let next = sys.submit("after-garbage", json!({"intent": "check git status", "working_dir": sys.project()})).await?;
    sys.wait_for(next, "skynet.job.dispatched.v1").await?;
    sys.shutdown().await
}

#[tokio::test]
async fn binary_headers_are_percent_decoded_and_other_spec_versions_refused() -> anyhow::Result<()> {
    let sys = System::start().await?;
    let mut h = HeaderMap::new();
    h.insert("ce-specversion", "1.0");
    h.insert("ce-id", "pct-1");
    h.insert("ce-source", "me/J%C3%BCrgen%20laptop");
    h.insert("ce-type", "skynet.task.requested.v1");
    h.insert("content-type", "application/json");
    sys.client
        .publish_with_headers(INTAKE, h, br#"{"intent":"check git status","working_dir":"/tmp"}"#.to_vec().into())
        .await?;
    // The id the submitter derives from the decoded source, as the binding says.
    let job = job_id("me/Jürgen laptop", "pct-1");
    let requested = sys.wait_for(job, "skynet.job.requested.v1").await?;
    assert_eq!(requested["data"]["request_source"], "me/Jürgen laptop");

    let mut v03: serde_json::Value = serde_json::from_slice(&task("v03-1", json!({"intent": "check git status"})))?;
    v03["specversion"] = json!("0.3");
    sys.client.publish(INTAKE, serde_json::to_vec(&v03)?.into()).await?;
    let letter = eventually(WAIT, "the 0.3 submission dead-lettered", || async {
        dead_letters(&sys, "intake").await.ok()?.into_iter().find(|(_, _, r)| r.contains("0.3"))
    })
    .await?;
    assert!(letter.2.contains("1.0"), "the reason says what is accepted: {}", letter.2);
    sys.shutdown().await
}

/// Dead letters as stored (sequence, subject, payload), read as a client may.
async fn dlq(sys: &System) -> anyhow::Result<Vec<skynet_bus::read::Stored>> {
    skynet_bus::read::read_all(&sys.client, "SKYNET_DLQ", "skynet.dlq.>", 1).await.map_err(|e| anyhow::anyhow!(e))
}

#[tokio::test]
async fn a_client_cannot_reflect_stored_bytes_into_the_log() -> anyhow::Result<()> {
    let sys = System::start().await?;
    let job = awaiting(&sys, "reflect-1").await?;
    // Step 1: get forged bytes stored somewhere the client can read: a
    // submission the intake refuses is kept unchanged in the dead letters.
    let event = forged(job, "approved", "skynet/policy", json!({"approver": "mallory"}));
    sys.client.publish(INTAKE, event.clone().into()).await?;
    let stored = eventually(WAIT, "the forged submission dead-lettered", || async {
        dlq(&sys).await.ok()?.into_iter().find(|m| m.payload.as_ref() == event.as_slice())
    })
    .await?;
    // Step 2: ask the server to send it (a direct get) to the job's subject,
    // and a publish acknowledgement to another of its subjects.
    let get = json!({"seq": stored.seq}).to_string();
    sys.client
        .publish_with_reply("$JS.API.DIRECT.GET.SKYNET_DLQ", format!("skynet.job.{job}.approved"), get.into())
        .await?;
    let ack_target = format!("skynet.job.{job}.started");
    sys.client.publish_with_reply(INTAKE, ack_target, task("reflect-ack", json!({"intent": "x"})).into()).await?;
    // Step 3: an answer from the policy service aimed at the JetStream API.
    let before = dlq(&sys).await?.len();
    sys.client.publish_with_reply("skynet.policy.check", "$JS.API.STREAM.PURGE.SKYNET_DLQ", "{}".into()).await?;
    sys.client.flush().await?;
    // A real approval after all of that is the first and only one.
    let reply = sys.request("skynet.cmd.job.approve", json!({"job_id": job, "token": "token-bob"})).await?;
    assert_eq!(reply["accepted"], true, "the job was no longer awaiting approval: {reply}");
    assert_eq!(sys.approvers(job).await?, [json!("bob")]);
    let raw = skynet_bus::read::read_all(&sys.client, "SKYNET_EVENTS", &format!("skynet.job.{job}.>"), 1)
        .await
        .map_err(|e| anyhow::anyhow!(e))?;
    for m in &raw {
        // A reflected acknowledgement or answer would not decode; a reflected
        // dead letter would be mallory's approval (above).
        let env = skynet_bus::codec::decode(m.headers.as_ref(), &m.payload);
        let ok = env.as_ref().is_ok_and(|e| e.subject.as_deref() == Some(job.to_string().as_str()));
        assert!(ok, "message {} of the job is not one of its events: {:?}", m.seq, m.payload);
    }
    assert!(dlq(&sys).await?.len() >= before, "the dead letters were not purged");
    sys.shutdown().await
}

#[tokio::test]
async fn a_service_answers_only_to_inboxes() -> anyhow::Result<()> {
    let sys = System::start().await?;
    sys.client.publish(INTAKE, "not json".into()).await?;
    eventually(WAIT, "a dead letter", || async { (!dlq(&sys).await.ok()?.is_empty()).then_some(()) }).await?;
    // Even a service role (here the API's) cannot aim the policy's answer at
    // the JetStream API: the policy service may publish only to inboxes.
    let api = sys.nats.connect_as("api").await?;
    api.publish_with_reply("skynet.policy.check", "$JS.API.STREAM.PURGE.SKYNET_DLQ", "{}".into()).await?;
    api.flush().await?;
    refused(&sys, "$JS.API.STREAM.PURGE.SKYNET_DLQ").await?;
    assert_eq!(dlq(&sys).await?.len(), 1, "the dead letters are all still there");
    sys.shutdown().await
}

#[tokio::test]
async fn a_client_cannot_claim_a_skynet_source() -> anyhow::Result<()> {
    let sys = System::start().await?;
    // The API's jobs are UUIDv5("skynet/api", idempotency key): squatting one
    // would hand a victim's later submission the attacker's job.
    let body = serde_json::to_vec(&json!({"specversion": "1.0", "id": "victim-key", "source": "skynet/api",
        "type": "skynet.task.requested.v1", "data": {"intent": "deploy to production"}}))?;
    sys.client.publish(INTAKE, body.into()).await?;
    let letter = eventually(WAIT, "the squatting submission refused", || async {
        dead_letters(&sys, "intake").await.ok()?.into_iter().find(|(c, _, _)| c == "reserved_source")
    })
    .await?;
    assert!(letter.2.contains("skynet/api"), "{}", letter.2);
    assert!(sys.job_events(job_id("skynet/api", "victim-key")).await?.is_empty(), "no job opened");
    sys.shutdown().await
}
