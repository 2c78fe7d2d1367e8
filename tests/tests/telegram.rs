//! The Telegram bot in the running system, against a Bot API double (a real
//! HTTP server in the test) and teloxide's own dispatcher polling it: a task
//! from the chat is planned, its approvers get the plan with buttons, a press
//! approves it under the presser's principal, the job runs, and the messages
//! are edited with the outcome. Strangers are refused; a 429 is waited out; a
//! restart and the server delivering every event again send nothing twice.

use std::time::Duration;

use skynet_system_tests::telegram::{BOT_TOKEN, BotMessage, FakeBotApi};
use skynet_system_tests::{System, WAIT};
use skynet_testkit::{NatsServer, TestDb, eventually};

const ALICE: i64 = 1001;
const BOB: i64 = 1002;
/// An approver on the list who blocked the bot: nobody else waits for her.
const CAROL: i64 = 1003;

async fn system(fake: &FakeBotApi, nats: NatsServer, db: TestDb) -> anyhow::Result<System> {
    system_for(fake, nats, db, format!("{CAROL}=token-carol,{ALICE}=token-alice,{BOB}=token-bob")).await
}

/// The system with the bot allowing `users` (`<telegram id>=<token>,…`).
async fn system_for(fake: &FakeBotApi, nats: NatsServer, db: TestDb, users: String) -> anyhow::Result<System> {
    let sys = starting(fake, nats, db, users).await?;
    bot_ready(fake).await?;
    Ok(sys)
}

/// The bot is up once it has told Telegram its commands.
async fn bot_ready(fake: &FakeBotApi) -> anyhow::Result<()> {
    eventually(WAIT, "setMyCommands", || async { (!fake.commands().is_empty()).then_some(()) }).await
}

/// The system starting, the bot perhaps not up yet (it refuses to start while
/// a token of its allow-list is unknown, and is restarted).
async fn starting(fake: &FakeBotApi, nats: NatsServer, db: TestDb, users: String) -> anyhow::Result<System> {
    let url = fake.url.clone();
    let sys = System::start_with(nats, db, move |s| {
        s.telegram.bot_token = Some(BOT_TOKEN.into());
        s.telegram.api_url = Some(url);
        s.telegram.users = users;
        s.executor.providers = vec!["local".into()];
    })
    .await?;
    Ok(sys)
}

/// The first message to `chat` that `pred` accepts.
async fn message(
    fake: &FakeBotApi,
    chat: i64,
    what: &str,
    pred: impl Fn(&BotMessage) -> bool,
) -> anyhow::Result<BotMessage> {
    eventually(WAIT, what, || async { fake.messages_to(chat).into_iter().find(|m| pred(m)) }).await
}

async fn answer(fake: &FakeBotApi, id: &str) -> anyhow::Result<String> {
    eventually(WAIT, "the button's answer", || async { fake.callback_answer(id) }).await
}

/// `/task` from Alice, approved by Bob's press: the reply names the job and
/// its plan, the request reaches both approvers with buttons, the job runs
/// and every message about it ends showing the outcome.
#[tokio::test]
async fn a_task_from_the_chat_is_approved_with_a_button_runs_and_its_messages_show_the_outcome() -> anyhow::Result<()> {
    let fake = FakeBotApi::start().await?;
    fake.block(CAROL);
    let sys = system(&fake, NatsServer::start()?, TestDb::create().await?).await?;
    for command in ["task", "status", "jobs", "approve", "deny", "cancel", "alerts", "emergency_stop", "resume", "help"]
    {
        assert!(fake.commands().iter().any(|c| c == command), "setMyCommands lacks {command}");
    }
    fake.user_says(ALICE, &format!("/task build the project in {}", sys.project()));
    let reply = message(&fake, ALICE, "the reply to /task", |m| m.text.starts_with("Job ")).await?;
    let job: uuid::Uuid = reply.text[4..40].parse()?;
    assert!(reply.text.contains("build") && reply.text.contains("[WRITE]"), "{}", reply.text);

    // Both approvers are asked, with buttons whose data fits Telegram's 64 bytes.
    let request = |chat| {
        message(&fake, chat, "the approval request", move |m| {
            m.text.starts_with("Approval needed") && m.text.contains(&job.to_string())
        })
    };
    let (to_alice, to_bob) = (request(ALICE).await?, request(BOB).await?);
    assert_eq!(to_bob.buttons, [format!("a:{job}"), format!("d:{job}")]);
    assert!(to_bob.buttons.iter().all(|b| b.len() < 64));
    assert!(to_bob.text.contains("[WRITE]"), "each step's risk: {}", to_bob.text);

    // Alice may not approve her own job: the answer says so, nothing changes.
    let own = fake.user_presses(ALICE, to_alice.message_id, &format!("a:{job}"));
    let said = answer(&fake, &own).await?;
    assert!(said.contains("Nothing changed") && said.contains("awaiting_approval"), "{said}");

    let press = fake.user_presses(BOB, to_bob.message_id, &format!("a:{job}"));
    assert!(answer(&fake, &press).await?.starts_with("Approved"), "bob's press approves");
    let done = sys.wait_for(job, "skynet.job.succeeded.v1").await?;
    assert_eq!(sys.approvers(job).await?, [serde_json::json!("bob")], "recorded under the presser's principal: {done}");
    let requested = sys.wait_for(job, "skynet.job.requested.v1").await?;
    assert_eq!(requested["data"]["requested_by"], "alice", "the chat user's principal is the requester");

    // Every message about the job now shows the outcome, without buttons.
    for chat in [ALICE, BOB] {
        let m = message(&fake, chat, "the request edited with the outcome", |m| {
            m.text.contains(&job.to_string())
                && m.text.starts_with('✅')
                && m.buttons.is_empty()
                && m.message_id == if chat == BOB { to_bob.message_id } else { to_alice.message_id }
        })
        .await?;
        assert!(m.text.contains("exit 0") && m.text.contains("Approved by bob"), "{}", m.text);
    }
    message(&fake, ALICE, "the /task reply edited with the outcome", |m| {
        m.message_id == reply.message_id && m.text.starts_with('✅')
    })
    .await?;

    // A spent button answers with where the job is now.
    let again = fake.user_presses(BOB, to_bob.message_id, &format!("a:{job}"));
    let said = answer(&fake, &again).await?;
    assert!(said.contains("succeeded") && said.contains("approved by bob"), "{said}");

    // The emergency stop is an administrator's: Alice is refused, nothing is paused.
    fake.user_says(ALICE, "/emergency_stop just testing");
    let refused = message(&fake, ALICE, "the refusal", |m| m.text.starts_with("Refused")).await?;
    assert!(refused.text.contains("admin role"), "{}", refused.text);
    assert!(sys.read_all("SKYNET_EVENTS", skynet_contract::system::CONTROL_SUBJECT).await?.is_empty());
    sys.shutdown().await
}

/// An administrator's `/emergency_stop` from the phone cancels the running
/// job under the administrator's name and holds a new one; every allowed user
/// who may read is told, one without the read role is not; `/resume` from the
/// chat lets the held job run.
#[tokio::test]
async fn an_administrator_stops_everything_from_the_chat_and_resumes_it() -> anyhow::Result<()> {
    use skynet_contract::system::CONTROL_SUBJECT;
    const ADMIN: i64 = 1009;
    /// Allowed to submit, not to read: no alerts, no stop notices.
    const DAVE: i64 = 1004;
    let fake = FakeBotApi::start().await?;
    // Notices go out in this order: Dave is passed over before Bob is told.
    let users = format!("{ADMIN}={},{DAVE}=token-dave,{BOB}=token-bob", skynet_system_tests::ADMIN_TOKEN);
    let sys = starting(&fake, NatsServer::start()?, TestDb::create().await?, users).await?;
    sys.principal("dave", "token-dave", &[skynet_contract::principal::PrincipalRole::Submit]).await?;
    bot_ready(&fake).await?;
    let slow = tempfile::tempdir()?;
    std::fs::write(slow.path().join("Makefile"), "test:\n\t@sleep 60\n")?;
    let dir = slow.path().display().to_string();
    let running = sys.submit("slow", serde_json::json!({"intent": "run the tests", "working_dir": dir})).await?;
    sys.wait_for(running, "skynet.job.step_started.v1").await?;

    fake.user_says(ADMIN, "/emergency_stop drill from the phone");
    let done = message(&fake, ADMIN, "the stop's reply", |m| m.text.starts_with("Done")).await?;
    assert!(!done.text.is_empty());
    let cancelled = sys.wait_for(running, "skynet.job.cancelled.v1").await?;
    assert_eq!(cancelled["data"]["reason"], "emergency stop: drill from the phone", "{cancelled}");
    let switches = sys.read_all("SKYNET_EVENTS", CONTROL_SUBJECT).await?;
    assert_eq!(switches.len(), 1, "one stop");
    let pause: serde_json::Value = serde_json::from_slice(&switches[0].2)?;
    assert_eq!(pause["data"]["cancel_running"], true, "{pause}");
    assert!(pause["data"]["by"].as_str().is_some_and(|b| !b.is_empty()), "{pause}");
    assert_eq!(cancelled["data"]["by"], pause["data"]["by"], "the cancel names the administrator");
    let told = message(&fake, BOB, "the stop's notice", |m| m.text.contains("EMERGENCY STOP")).await?;
    assert!(told.text.contains("drill from the phone"), "{}", told.text);
    assert!(fake.messages_to(DAVE).is_empty(), "no notice without the read role: {:?}", fake.messages_to(DAVE));

    // A new task is decided, then waits for the resume.
    let held = sys.submit("held", serde_json::json!({"intent": "run the tests", "working_dir": sys.project()})).await?;
    sys.wait_for(held, "skynet.job.policy_decided.v1").await?;
    fake.user_says(ADMIN, "/resume drill over");
    if let Err(e) = sys.wait_for(held, "skynet.job.succeeded.v1").await {
        anyhow::bail!("{e}: its events are {:?}", sys.types(held).await?);
    }
    let resumed = sys.seq_of(CONTROL_SUBJECT, "skynet.system.resumed.v1").await?;
    let dispatched = sys.seq_of(&format!("skynet.job.{held}.>"), "skynet.job.dispatched.v1").await?;
    assert!(dispatched > resumed, "dispatched at {dispatched}, before the resume at {resumed}");
    message(&fake, BOB, "the resume's notice", |m| m.text.contains("Resumed by")).await?;
    assert!(fake.messages_to(DAVE).is_empty(), "{:?}", fake.messages_to(DAVE));
    let types = sys.types(running).await?;
    assert_eq!(types.last().map(String::as_str), Some("skynet.job.cancelled.v1"), "{types:?}");
    sys.shutdown().await
}

/// Someone not on the allow-list gets one polite refusal, however often they
/// write, and nothing reaches SKYNET.
#[tokio::test]
async fn a_stranger_is_refused_once_and_no_job_exists() -> anyhow::Result<()> {
    const STRANGER: i64 = 666;
    let fake = FakeBotApi::start().await?;
    let sys = system(&fake, NatsServer::start()?, TestDb::create().await?).await?;
    fake.user_says(STRANGER, "/task check git status");
    let refusal = message(&fake, STRANGER, "the refusal", |_| true).await?;
    assert!(refusal.text.contains("Nothing was done"), "{}", refusal.text);
    fake.user_says(STRANGER, "check git status");
    // Updates of one chat are handled in order: once the press after the
    // second message is answered, the second message was handled too.
    let press = fake.user_presses(STRANGER, refusal.message_id, "a:00000000-0000-0000-0000-000000000000");
    assert!(answer(&fake, &press).await?.contains("Nothing was done"));
    assert_eq!(fake.messages_to(STRANGER).len(), 1, "one refusal, not one per message");
    // An allowed user in a group chat is refused too: group talk is not a task,
    // and answers there would reach people not on the list.
    fake.user_says_in_group(ALICE, -500, "check git status");
    let in_group = message(&fake, -500, "the refusal in the group", |_| true).await?;
    assert!(in_group.text.contains("private chats"), "{}", in_group.text);
    // A stop typed an hour ago, while the bot was away, does nothing now.
    fake.user_said_long_ago(BOB, "/emergency_stop typed while you were away", 3600);
    let ignored = message(&fake, BOB, "the stale command's answer", |m| m.text.starts_with("Ignored")).await?;
    assert!(ignored.text.contains("while I was away"), "{}", ignored.text);
    let requested = sys.read_all("SKYNET_EVENTS", "skynet.job.*.requested").await?;
    assert!(requested.is_empty(), "no job: {} requested", requested.len());
    assert!(sys.read_all("SKYNET_EVENTS", skynet_contract::system::CONTROL_SUBJECT).await?.is_empty(), "no stop");
    sys.shutdown().await
}

/// A 429 with `retry_after` is waited out, then the message goes through.
#[tokio::test]
async fn telegrams_rate_limit_is_honoured() -> anyhow::Result<()> {
    let fake = FakeBotApi::start().await?;
    let sys = system(&fake, NatsServer::start()?, TestDb::create().await?).await?;
    fake.throttle_next_sends(1);
    fake.user_says(BOB, "/help");
    message(&fake, BOB, "the help, after the 429", |m| m.text.contains("/emergency_stop")).await?;
    let sends = fake.send_times();
    let refused = sends.iter().find(|(_, r)| *r).map(|(t, _)| *t).ok_or_else(|| anyhow::anyhow!("no 429 given"))?;
    let accepted = sends.iter().find(|(_, r)| !*r).map(|(t, _)| *t).ok_or_else(|| anyhow::anyhow!("never sent"))?;
    assert!(accepted.duration_since(refused) >= Duration::from_millis(950), "retried before retry_after");
    sys.shutdown().await
}

/// With a job waiting, the bot restarts (the whole system does) and then the
/// server delivers every event to the bot's durable again: the approvers'
/// chats still have one request each, and a press on the message sent before
/// the restart still approves, its message edited with the outcome.
#[tokio::test]
async fn a_restart_and_a_full_redelivery_send_nothing_twice() -> anyhow::Result<()> {
    let fake = FakeBotApi::start().await?;
    let sys = system(&fake, NatsServer::start()?, TestDb::create().await?).await?;
    // A project of the test's own: the harness's goes with its services.
    let project = tempfile::tempdir()?;
    std::fs::write(project.path().join("Makefile"), "all:\n\t@echo built\n")?;
    fake.user_says(ALICE, &format!("/task build the project in {}", project.path().display()));
    let reply = message(&fake, ALICE, "the reply to /task", |m| m.text.starts_with("Job ")).await?;
    let job: uuid::Uuid = reply.text[4..40].parse()?;
    let requests =
        |chat| fake.messages_to(chat).into_iter().filter(|m| m.text.starts_with("Approval needed")).collect::<Vec<_>>();
    eventually(WAIT, "both requests", || async {
        (requests(ALICE).len() == 1 && requests(BOB).len() == 1).then_some(())
    })
    .await?;
    let (nats, db) = sys.stop_services().await?;
    let sys = system(&fake, nats, db).await?;

    // The server delivers every event to the bot's durable again.
    let admin = async_nats::jetstream::new(sys.nats.connect().await?);
    let stream = admin.get_stream("SKYNET_EVENTS").await?;
    let mut config = stream.consumer_info("telegram").await?.config.clone();
    stream.delete_consumer("telegram").await?;
    config.deliver_policy = async_nats::jetstream::consumer::DeliverPolicy::All;
    stream.create_consumer(config).await?;
    eventually(WAIT, "the redelivered events to be acknowledged", || async {
        let info = admin.get_stream("SKYNET_EVENTS").await.ok()?.consumer_info("telegram").await.ok()?.clone();
        (info.num_pending == 0 && info.num_ack_pending == 0 && info.delivered.stream_sequence > 0).then_some(())
    })
    .await?;
    assert_eq!((requests(ALICE).len(), requests(BOB).len()), (1, 1), "no request sent twice");

    let to_bob = requests(BOB).remove(0);
    let press = fake.user_presses(BOB, to_bob.message_id, &format!("a:{job}"));
    let said = answer(&fake, &press).await?;
    assert!(said.starts_with("Approved"), "{said}");
    if let Err(e) = sys.wait_for(job, "skynet.job.succeeded.v1").await {
        anyhow::bail!("{e}: the job's events are {:?}", sys.types(job).await?);
    }
    message(&fake, BOB, "the pre-restart request edited with the outcome", |m| {
        m.message_id == to_bob.message_id && m.text.starts_with('✅')
    })
    .await?;
    eventually(WAIT, "both requests to show the outcome", || async {
        (requests(ALICE).is_empty() && requests(BOB).is_empty()).then_some(())
    })
    .await?;
    // Only the job's messages: the sentinel may have told bob of no executor
    // while the services restarted, which is another message and a right one.
    let about_job = fake.messages_to(BOB).into_iter().filter(|m| m.text.contains(&job.to_string())).count();
    assert_eq!(about_job, 1, "bob got exactly one message about the job: {:?}", fake.messages_to(BOB));
    sys.shutdown().await
}
