//! The emergency stop in the running system: with jobs running, a pause by an
//! administrator cancels them all (naming who stopped them and why), a new
//! task is accepted, planned and decided but waits, and a resume lets it run.
//! Only the admin role may stop or resume.

use serde_json::json;
use skynet_system_tests::{ADMIN_TOKEN, System};
use skynet_testkit::{NatsServer, TestDb};

#[tokio::test]
async fn an_emergency_stop_cancels_running_jobs_and_holds_new_ones_until_resumed() -> anyhow::Result<()> {
    let sys = System::start_with(NatsServer::start()?, TestDb::create().await?, |s| {
        s.executor.providers = vec!["local".into()];
    })
    .await?;
    // A project whose tests take a long time: `run the tests` is READ_ONLY, so it runs unapproved.
    let slow = tempfile::tempdir()?;
    std::fs::write(slow.path().join("Makefile"), "test:\n\t@sleep 60\n")?;
    let dir = slow.path().display().to_string();
    let mut running = Vec::new();
    for i in 0..2 {
        running.push(sys.submit(&format!("slow-{i}"), json!({"intent": "run the tests", "working_dir": dir})).await?);
    }
    for job in &running {
        sys.wait_for(*job, "skynet.job.step_started.v1").await?;
    }

    // Nobody but an administrator stops the system.
    let stop = |token: &str, id: &str| json!({"token": token, "reason": "drill", "command_id": id});
    let refused = sys.request("skynet.cmd.system.pause", stop("token-bob", "c0")).await?;
    assert_eq!(
        (refused["accepted"].as_bool(), refused["code"].as_str()),
        (Some(false), Some("forbidden")),
        "{refused}"
    );
    let paused = sys.request("skynet.cmd.system.pause", stop(ADMIN_TOKEN, "c1")).await?;
    assert_eq!(paused["accepted"], true, "{paused}");
    // The same command again (a lost reply) is one event.
    sys.request("skynet.cmd.system.pause", stop(ADMIN_TOKEN, "c1")).await?;
    let switches = sys.read_all("SKYNET_EVENTS", skynet_contract::system::CONTROL_SUBJECT).await?;
    assert_eq!(switches.len(), 1);
    let pause: serde_json::Value = serde_json::from_slice(&switches[0].2)?;
    assert_eq!(
        (pause["type"].as_str(), pause["source"].as_str()),
        (Some("skynet.system.paused.v1"), Some("skynet/policy"))
    );
    let by = pause["data"]["by"].as_str().unwrap_or_default().to_owned();
    assert!(!by.is_empty() && pause["data"]["cancel_running"] == true, "{pause}");

    for job in &running {
        let cancelled = sys.wait_for(*job, "skynet.job.cancelled.v1").await?;
        assert_eq!(cancelled["data"]["by"], by.as_str(), "the stop names who stopped it: {cancelled}");
        assert_eq!(cancelled["data"]["reason"], "emergency stop: drill");
    }

    // A new task is accepted, planned and decided, then waits.
    let held = sys.submit("after-stop", json!({"intent": "run the tests", "working_dir": sys.project()})).await?;
    let decided = sys.wait_for(held, "skynet.job.policy_decided.v1").await?;
    assert_eq!(decided["data"]["auto_approved"], true);

    // Over HTTP: anyone who may read sees the stop; only an administrator lifts it.
    let url = sys.api(skynet_api::Config::default()).await?;
    let http = reqwest::Client::new();
    let state: serde_json::Value = http
        .get(format!("{url}/v1/system"))
        .bearer_auth(skynet_system_tests::token("bob"))
        .send()
        .await?
        .json()
        .await?;
    assert_eq!((&state["paused"], &state["last"]["by"]), (&json!(true), &json!(by)), "{state}");
    let not_admin =
        http.post(format!("{url}/v1/system/resume")).bearer_auth(skynet_system_tests::token("alice")).send().await?;
    assert_eq!(not_admin.status(), reqwest::StatusCode::FORBIDDEN);
    let resumed = http
        .post(format!("{url}/v1/system/resume"))
        .bearer_auth(ADMIN_TOKEN)
        .json(&json!({"reason": "drill over"}))
        .send()
        .await?;
    assert_eq!(resumed.status(), reqwest::StatusCode::OK, "{:?}", resumed.text().await);
    if let Err(e) = sys.wait_for(held, "skynet.job.succeeded.v1").await {
        anyhow::bail!("{e}: its events are {:?}", sys.types(held).await?);
    }
    // It was dispatched only after the resume: the log orders them.
    let switches =
        skynet_bus::read::read_all(&sys.client, "SKYNET_EVENTS", skynet_contract::system::CONTROL_SUBJECT, 1)
            .await
            .map_err(|e| anyhow::anyhow!(e))?;
    let resume_seq = switches.last().map(|m| m.seq).unwrap_or_default();
    assert!(
        sys.seq_of(&format!("skynet.job.{held}.>"), "skynet.job.dispatched.v1").await? > resume_seq,
        "dispatched before the resume"
    );
    // The stopped jobs stay cancelled; nothing of theirs runs again.
    for job in &running {
        let types = sys.types(*job).await?;
        assert_eq!(types.last().map(String::as_str), Some("skynet.job.cancelled.v1"), "{types:?}");
    }

    // The stop over HTTP: an administrator's only, and it holds dispatching.
    let pause = |token: &str| {
        http.post(format!("{url}/v1/system/pause"))
            .bearer_auth(token.to_owned())
            .json(&json!({"reason": "http drill", "keep_running": true}))
            .send()
    };
    assert_eq!(pause(&skynet_system_tests::token("bob")).await?.status(), reqwest::StatusCode::FORBIDDEN);
    let paused = pause(ADMIN_TOKEN).await?;
    assert_eq!(paused.status(), reqwest::StatusCode::OK, "{:?}", paused.text().await);
    let switches = sys.read_all("SKYNET_EVENTS", skynet_contract::system::CONTROL_SUBJECT).await?;
    let last: serde_json::Value =
        serde_json::from_slice(&switches.last().ok_or_else(|| anyhow::anyhow!("no switch"))?.2)?;
    assert_eq!(
        (last["type"].as_str(), last["data"]["reason"].as_str(), last["data"]["cancel_running"].as_bool()),
        (Some("skynet.system.paused.v1"), Some("http drill"), Some(false)),
        "{last}"
    );
    let state: serde_json::Value =
        http.get(format!("{url}/v1/system")).bearer_auth(ADMIN_TOKEN).send().await?.json().await?;
    assert_eq!(state["paused"], true, "{state}");
    sys.shutdown().await
}
