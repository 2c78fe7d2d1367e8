//! The roles file checked against the event contract and the stream
//! definitions: each job event kind is publishable by its owners only, no role
//! but admin manages streams or durable consumers, and inboxes are private.

use skynet_contract::JobEventKind;
use skynet_contract::owners::owners;

use super::*;
use crate::definitions;

fn roles() -> Roles {
    Roles::builtin().expect("nats/roles.json parses")
}

fn services(r: &Roles) -> impl Iterator<Item = (&String, &Role)> {
    r.roles.iter().filter(|(n, _)| n.as_str() != ADMIN)
}

#[test]
fn wildcards_match_like_the_server() {
    assert!(subject_matches("skynet.job.*.approved", "skynet.job.abc.approved"));
    assert!(!subject_matches("skynet.job.*.approved", "skynet.job.abc.approved.x"));
    assert!(subject_matches("skynet.job.>", "skynet.job.abc.approved"));
    assert!(!subject_matches("skynet.job.>", "skynet.job"));
    assert!(subject_matches(">", "anything.at.all"));
    assert!(!subject_matches("a.b", "a.b.c"));
    let rule = Rule { allow: vec!["a.>".into()], deny: vec!["a.b".into()] };
    assert!(rule.permits("a.c") && !rule.permits("a.b"));
}

#[test]
fn every_service_and_the_client_and_admin_have_a_role() {
    let r = roles();
    for name in [
        "intake",
        "planner",
        "policy",
        "dispatcher",
        "scheduler",
        "executor",
        "projector",
        "api",
        "memory",
        "initiative",
        "sentinel",
        "telegram",
        CLIENT,
        ADMIN,
    ] {
        let role = r.get(name).expect(name);
        assert!(!role.description.is_empty(), "{name} says what it is for");
    }
}

#[test]
fn each_job_event_kind_is_publishable_by_its_owners_only() {
    let r = roles();
    let job = "0b7d5a55-7c3e-5c46-9a39-3b0f0a7c2a10";
    for kind in JobEventKind::ALL {
        let subject = format!("skynet.job.{job}.{}", kind.token());
        for (name, role) in services(&r) {
            let owner = owners(*kind).contains(&name.as_str());
            assert_eq!(role.permissions.may_publish(&subject), owner, "{name} publishing {subject}");
        }
    }
    // Nothing outside the contract's kinds can be written under a job either.
    for (name, role) in services(&r) {
        assert!(!role.permissions.may_publish(&format!("skynet.job.{job}.made_up")), "{name}");
        assert!(!role.permissions.may_publish(&format!("skynet.job.{job}")), "{name}");
    }
}

#[test]
fn only_the_sentinel_records_alerts_the_memory_service_memory_and_the_initiative_its_ledger() {
    let r = roles();
    for (name, role) in services(&r) {
        for verb in ["raised", "resolved", "undelivered", "silenced"] {
            let subject = format!("skynet.alert.0123456789abcdef.{verb}");
            assert_eq!(role.permissions.may_publish(&subject), name == "sentinel", "{name} publishing {subject}");
        }
        for verb in ["recorded", "forgotten"] {
            let subject = format!("skynet.memory.mem-1.{verb}");
            assert_eq!(role.permissions.may_publish(&subject), name == "memory", "{name} publishing {subject}");
        }
        // Whoever answers the silence command decides who may silence.
        let answers = role.permissions.may_subscribe("skynet.cmd.alert.silence");
        assert_eq!(answers, name == "sentinel", "{name} answering silences");
        // The initiative's ledger is its own: its limits are counted from it.
        for subject in [
            "skynet.initiative.maintenance.decided",
            "skynet.initiative.control.paused",
            "skynet.initiative.control.resumed",
        ] {
            assert_eq!(role.permissions.may_publish(subject), name == "initiative", "{name} publishing {subject}");
        }
        for command in ["skynet.cmd.initiative.pause", "skynet.cmd.initiative.resume"] {
            assert_eq!(role.permissions.may_subscribe(command), name == "initiative", "{name} answering {command}");
        }
        // The trusted channel, whose sources the intake believes (a client's
        // `skynet.intake.task` is imported as `skynet.intake.client`): only the
        // API (source skynet/api) and the initiative (skynet/initiative).
        if role.account == SKYNET_ACCOUNT {
            let trusted = role.permissions.may_publish("skynet.intake.task");
            assert_eq!(trusted, name == "api" || name == "initiative", "{name} publishing skynet.intake.task");
        }
    }
    // Its submissions arrive on the trusted channel (the intake refuses its
    // source on the client one), so it lives in SKYNET's account.
    assert_eq!(r.get("initiative").expect("initiative").account, SKYNET_ACCOUNT);
    assert!(r.get("initiative").expect("initiative").permissions.may_publish("skynet.intake.task"));
}

#[test]
fn only_admin_manages_streams_and_durable_consumers() {
    let r = roles();
    let streams = definitions::streams().expect("streams");
    let durables = definitions::consumers().expect("consumers");
    for (name, role) in services(&r) {
        let p = &role.permissions;
        for s in &streams {
            for op in ["CREATE", "UPDATE", "DELETE"] {
                assert!(!p.may_publish(&format!("$JS.API.STREAM.{op}.{}", s.name)), "{name} {op} {}", s.name);
            }
            // Only object-store chunks are ever purged (replacing an object).
            if !s.name.starts_with("OBJ_") || name != "executor" {
                assert!(!p.may_publish(&format!("$JS.API.STREAM.PURGE.{}", s.name)), "{name} purge {}", s.name);
            }
            assert!(!p.may_publish(&format!("$JS.API.STREAM.MSG.DELETE.{}", s.name)), "{name}");
        }
        for (stream, c) in &durables {
            let d = c.durable_name.as_deref().expect("durable");
            for subject in [
                format!("$JS.API.CONSUMER.CREATE.{stream}.{d}"),
                format!("$JS.API.CONSUMER.CREATE.{stream}.{d}.skynet.job.x.scheduled"),
                format!("$JS.API.CONSUMER.DURABLE.CREATE.{stream}.{d}"),
                format!("$JS.API.CONSUMER.DELETE.{stream}.{d}"),
                format!("$JS.API.CONSUMER.CREATE.{stream}"),
            ] {
                assert!(!p.may_publish(&subject), "{name} may not {subject}");
            }
            // A durable's messages and acks belong to the service of that name.
            let own = name == d;
            assert_eq!(p.may_publish(&format!("$JS.API.CONSUMER.MSG.NEXT.{stream}.{d}")), own, "{name} pull {d}");
            assert_eq!(p.may_publish(&format!("$JS.ACK.{stream}.{d}.1.2.3.4.5")), own, "{name} ack {d}");
            assert_eq!(p.may_publish(&format!("$JS.ACK.dom.acc.{stream}.{d}.1.2.3.4.5.6")), own, "{name} ack v2 {d}");
        }
    }
}

#[test]
fn inboxes_are_private_and_the_client_only_submits_and_asks() {
    let r = roles();
    for (name, role) in services(&r) {
        let p = &role.permissions;
        assert!(p.may_subscribe(&format!("{}.abc", inbox_prefix(name))), "{name} reads its inbox");
        assert!(!p.may_subscribe("_INBOX.abc"), "{name} reads the default inbox");
        for other in r.roles.keys().filter(|o| *o != name) {
            assert!(!p.may_subscribe(&format!("{}.abc", inbox_prefix(other))), "{name} reads {other}'s inbox");
        }
        let consumes = ["intake", "planner", "policy", "dispatcher", "scheduler", "executor", "projector"]
            .contains(&name.as_str());
        if consumes {
            assert!(p.may_publish(&format!("skynet.dlq.{name}")), "{name} dead-letters what it cannot handle");
        }
        for other in r.roles.keys().filter(|o| *o != name) {
            assert!(!p.may_publish(&format!("skynet.dlq.{other}")), "{name} dead-letters as {other}");
        }
    }
    let client = &r.get(CLIENT).expect("client").permissions;
    assert!(client.may_publish("skynet.intake.task"));
    assert!(!client.may_publish("skynet.intake.other"));
    for subject in [
        "$KV.SKYNET_EXECUTORS.exec-1",
        "$KV.SKYNET_APPROVALS.job",
        "$KV.SKYNET_RATE.x",
        "$O.SKYNET_OUTPUT.C.x",
        "skynet.task.rejected",
        "skynet.report.x",
        "skynet.planner.preview",
        "$JS.API.CONSUMER.CREATE.SKYNET_EVENTS.mine",
        "$JS.API.CONSUMER.CREATE.SKYNET_EVENTS.mine.skynet.job.>",
    ] {
        assert!(!client.may_publish(subject), "client may not publish {subject}");
    }
    assert!(client.may_publish("$JS.API.DIRECT.GET.SKYNET_EVENTS"));
    assert!(client.may_publish("$JS.API.DIRECT.GET.SKYNET_DLQ"));
    // Heartbeats are readable (`skynet status`); principals and approvals are not.
    assert!(client.may_publish("$JS.API.DIRECT.GET.KV_SKYNET_EXECUTORS"));
    assert!(!client.may_publish("$JS.API.DIRECT.GET.KV_SKYNET_PRINCIPALS"));
    assert!(!client.may_publish("$JS.API.DIRECT.GET.KV_SKYNET_APPROVALS"));
    assert!(!client.allow_responses, "a client answers no service's requests");
    assert!(!client.may_subscribe("skynet.cmd.job.approve"), "a client cannot read others' commands");
}

#[test]
fn every_role_is_in_the_table_of_nats_readme() {
    let readme = include_str!("../../../../nats/README.md");
    for name in roles().roles.keys() {
        assert!(readme.contains(&format!("`{name}`")), "nats/README.md's role table lacks `{name}`");
    }
}

#[test]
fn no_role_answers_to_a_subject_its_requester_chooses() {
    let r = roles();
    for (name, role) in &r.roles {
        // allow_responses would let a requester aim the answer at a stream's
        // subject or at the JetStream API (a purge), under the service's name.
        assert!(!role.permissions.allow_responses, "{name} has allow_responses");
    }
    let policy = &r.get("policy").expect("policy").permissions;
    assert!(policy.may_publish("_R_.abc.def"), "answers imported requests");
    assert!(policy.may_publish("_INBOX_api.abc"), "answers the API");
    assert!(!policy.may_publish("$JS.API.STREAM.PURGE.SKYNET_DLQ"));
}

#[test]
fn clients_live_in_their_own_account_and_reach_only_what_skynet_exports() {
    let r = roles();
    let imports: Vec<String> = r.accounts["CLIENTS"]["imports"]
        .as_array()
        .expect("imports")
        .iter()
        .filter_map(|i| {
            let service = i.get("service")?;
            Some(i.get("to").or_else(|| service.get("subject"))?.as_str()?.to_owned())
        })
        .collect();
    for name in [CLIENT] {
        let role = r.get(name).expect(name);
        assert_eq!(role.account, "CLIENTS", "{name}");
        for subject in &role.permissions.publish.allow {
            assert!(imports.contains(subject), "{name} publishes {subject}, which SKYNET does not export");
        }
    }
    for (name, role) in r.roles.iter().filter(|(_, role)| role.account != "CLIENTS") {
        assert_eq!(role.account, SKYNET_ACCOUNT, "{name}");
    }
    assert_eq!(r.accounts[SKYNET_ACCOUNT]["jetstream"], "enabled");
    assert!(r.accounts["CLIENTS"].get("jetstream").is_none(), "clients hold no streams");
}

#[test]
fn the_telegram_bot_submits_and_commands_only_as_the_people_it_speaks_for() {
    let r = roles();
    let bot = &r.get("telegram").expect("telegram").permissions;
    // The client channel: the intake verifies the chat user's token there;
    // the trusted channel (whose requester is taken as named) is not the bot's.
    assert!(bot.may_publish("skynet.intake.client"));
    assert!(!bot.may_publish("skynet.intake.task"));
    for command in ["skynet.cmd.job.approve", "skynet.cmd.job.deny", "skynet.cmd.job.cancel", "skynet.cmd.system.pause"]
    {
        assert!(bot.may_publish(command), "{command}");
    }
    // It records nothing in the log, and no switch of the system itself.
    for subject in ["skynet.system.control", "skynet.job.x.approved", "skynet.alert.x.raised", "skynet.report.x"] {
        assert!(!bot.may_publish(subject), "{subject}");
    }
    assert!(bot.may_publish("$KV.SKYNET_TELEGRAM.job.x"));
    assert!(!bot.may_publish("$KV.SKYNET_APPROVALS.x"));
    // Only the policy records the system pause; the dispatcher and executors follow it.
    for (name, role) in &r.roles {
        let may = role.permissions.may_publish("skynet.system.control");
        assert_eq!(may, name == "policy" || name == ADMIN, "{name} publishes the system pause");
    }
    for name in ["dispatcher", "executor"] {
        assert!(r.get(name).expect(name).permissions.may_subscribe("skynet.system.control"), "{name}");
    }
}
