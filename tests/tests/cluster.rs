//! A 3-node JetStream cluster on this machine: three nats-server processes with
//! routes between them, every stream at three replicas (what bootstrap chooses
//! when the server reports a cluster). The event log's stream leader is killed
//! in the middle of a run: nothing acknowledged is lost and the run completes,
//! each job ending exactly once.

use std::collections::HashSet;
use std::time::Duration;

use skynet_bus::auth::{ADMIN, CLIENT};
use skynet_bus::server::{ClusterNode, Durability, ManagedServer, free_port};
use skynet_cli::bench::system::{bench_policy, register_bench_principal};
use skynet_cli::chaos::{check, submit_all};
use skynet_cli::infra::Infra;
use skynet_cli::settings::Settings;
use skynet_cli::up::{self, Service};
use skynet_testkit::{TestDb, eventually, eventually_every};
use tokio_util::sync::CancellationToken;

const JOBS: usize = 60;

/// The name of the event log's current leader.
async fn leader_of(js: &async_nats::jetstream::Context) -> anyhow::Result<Option<String>> {
    let mut stream = js.get_stream("SKYNET_EVENTS").await?;
    Ok(stream.info().await?.cluster.as_ref().and_then(|c| c.leader.clone()))
}

#[tokio::test]
async fn killing_the_event_logs_leader_mid_run_loses_nothing_and_the_run_completes() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let creds = dir.path().join("creds");
    let ports: Vec<u16> = (0..3).map(|_| free_port()).collect::<Result<_, _>>()?;
    let routes: Vec<u16> = (0..3).map(|_| free_port()).collect::<Result<_, _>>()?;
    let mut nodes = Vec::new();
    for i in 0..3 {
        let node = ClusterNode {
            name: format!("n{i}"),
            cluster_port: routes[i],
            routes: routes.iter().enumerate().filter(|(j, _)| *j != i).map(|(_, p)| *p).collect(),
        };
        let store = dir.path().join(format!("n{i}"));
        nodes.push(ManagedServer::start_node(&store, &creds, ports[i], Durability::Durable, Some(&node))?);
    }
    let url: String = ports.iter().map(|p| format!("nats://127.0.0.1:{p}")).collect::<Vec<_>>().join(",");
    let credential = |role: &str| nodes[0].creds.credential(role);
    let admin = skynet_bus::auth::connect(&url, &credential(ADMIN), ADMIN, "cluster-test").await?;
    // JetStream answers once the nodes have elected a meta leader.
    let js = eventually(Duration::from_secs(60), "the cluster's JetStream", || async {
        skynet_bus::bootstrap(&admin).await.ok()
    })
    .await?;
    let replicas = js.get_stream("SKYNET_EVENTS").await?.info().await?.config.num_replicas;
    assert_eq!(replicas, 3, "a cluster gets three replicas");
    register_bench_principal(&js).await?;

    let db = TestDb::create().await?;
    let mut settings = Settings::new(Some(url.clone()), Some(db.url.clone()));
    settings.nats_creds_dir = Some(creds.clone());
    settings.data_dir = dir.path().to_owned();
    settings.policy_file = Some(bench_policy(dir.path())?);
    settings.executor.providers = vec!["mock".into()];
    settings.executor.mock_latency_ms = 200;
    let infra = Infra::up(&settings).await?;
    let stop = CancellationToken::new();
    let token = stop.clone();
    let services: Vec<Service> =
        Service::ALL.iter().copied().filter(|s| !matches!(s, Service::Api | Service::Telegram)).collect();
    let task = tokio::spawn(async move { up::run(&infra, &settings, &services, token).await });

    let client = skynet_bus::auth::connect(&url, &credential(CLIENT), CLIENT, "cluster-test").await?;
    let submitter = tokio::spawn(submit_all(client, JOBS, 20.0));
    // Mid-run: some jobs have ended, most have not. Kill the log's leader.
    eventually(Duration::from_secs(60), "the run under way", || async {
        let messages = js.get_stream("SKYNET_EVENTS").await.ok()?.info().await.ok()?.state.messages;
        (messages > 50).then_some(())
    })
    .await?;
    let leader = leader_of(&js).await?;
    let leader = leader.ok_or_else(|| anyhow::anyhow!("the event log has no leader"))?;
    let index: usize = leader.trim_start_matches('n').parse()?;
    nodes[index].kill();

    // Every submission the cluster acknowledged ends, exactly once.
    let jobs: HashSet<String> = submitter.await??.into_iter().collect();
    assert_eq!(jobs.len(), JOBS);
    // Each check reads the log's terminal events: twice a second is plenty.
    let all_ended =
        eventually_every(Duration::from_millis(500), Duration::from_secs(120), "every job to end", || async {
            (check::ended(&admin, &jobs).await.ok()? == JOBS).then_some(())
        })
        .await;
    let outcome = check::outcome(&admin, &jobs).await?;
    // Which jobs did not end, and where each one stopped: what a failure needs.
    if let Err(e) = all_ended {
        let mut stuck = Vec::new();
        for job in &outcome.lost {
            let events = skynet_bus::read::read_all(&admin, "SKYNET_EVENTS", &format!("skynet.job.{job}.*"), 1)
                .await
                .map_err(|e| anyhow::anyhow!("reading the log: {e}"))?;
            stuck.push(format!("{job}: {:?}", events.iter().map(|m| m.subject.to_string()).collect::<Vec<_>>()));
        }
        anyhow::bail!("{e}; {outcome:?}; jobs that did not end: {stuck:#?}");
    }
    assert!(outcome.lost.is_empty(), "lost: {:?}", outcome.lost);
    assert!(outcome.doubled.is_empty(), "two terminal events: {:?}", outcome.doubled);
    assert!(outcome.steps_twice.is_empty(), "steps recorded twice: {:?}", outcome.steps_twice);
    assert_eq!(outcome.succeeded, JOBS, "{outcome:?}");
    // A new leader serves the log.
    let new_leader = leader_of(&js).await?;
    assert!(new_leader.is_some_and(|l| l != leader), "a new leader was elected");
    stop.cancel();
    task.await??;
    Ok(())
}
