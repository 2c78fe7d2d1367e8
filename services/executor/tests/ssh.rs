//! The ssh provider against a real `sshd` started by the test on a loopback
//! port, with its own host key and an authorized key made for the test.

mod common;

use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::*;
use serde_json::json;
use skynet_contract::executor::Health;
use skynet_executor::ProvidersConfig;
use skynet_executor::providers::ssh::{HostKeys, Ssh};
use skynet_testkit::eventually;

struct Sshd {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
}

impl Drop for Sshd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn keygen(path: &Path) -> anyhow::Result<()> {
    let ok = Command::new("ssh-keygen").args(["-q", "-t", "ed25519", "-N", "", "-f"]).arg(path).status()?.success();
    anyhow::ensure!(ok, "ssh-keygen failed");
    Ok(())
}

async fn sshd() -> anyhow::Result<Sshd> {
    let dir = tempfile::tempdir()?;
    let d = dir.path();
    keygen(&d.join("host_key"))?;
    keygen(&d.join("user_key"))?;
    std::fs::copy(d.join("user_key.pub"), d.join("authorized_keys"))?;
    let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let config = format!(
        "Port {port}\nListenAddress 127.0.0.1\nHostKey {d}/host_key\nPidFile {d}/sshd.pid\nAuthorizedKeysFile {d}/authorized_keys\n\
         StrictModes no\nUsePAM no\nPasswordAuthentication no\nKbdInteractiveAuthentication no\nPermitRootLogin prohibit-password\n\
         PubkeyAuthentication yes\n",
        d = d.display()
    );
    std::fs::write(d.join("sshd_config"), config)?;
    // sshd insists on its privilege-separation directory.
    std::fs::create_dir_all("/run/sshd")?;
    let child = Command::new("/usr/sbin/sshd")
        .args(["-D", "-e", "-f"])
        .arg(d.join("sshd_config"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| {
            anyhow::anyhow!("starting /usr/sbin/sshd (Debian's openssh-server; `./dev setup` installs it): {e}")
        })?;
    let sshd = Sshd { child, port, dir };
    eventually(Duration::from_secs(10), "sshd to listen", || async {
        std::net::TcpStream::connect(("127.0.0.1", port)).ok().map(|_| ())
    })
    .await?;
    Ok(sshd)
}

/// The server's host key pinned in a known_hosts file of the test's own.
fn pin(s: &Sshd) -> anyhow::Result<String> {
    let key = std::fs::read_to_string(s.dir.path().join("host_key.pub"))?;
    let mut words = key.split_whitespace();
    let (kind, body) = (words.next().unwrap_or_default(), words.next().unwrap_or_default());
    let path = s.dir.path().join("known_hosts");
    std::fs::write(&path, format!("[127.0.0.1]:{} {kind} {body}\n", s.port))?;
    Ok(path.display().to_string())
}

fn provider(s: &Sshd, port: u16) -> Ssh {
    let user = String::from_utf8_lossy(&Command::new("id").arg("-un").output().map(|o| o.stdout).unwrap_or_default())
        .trim()
        .to_owned();
    Ssh {
        host: "127.0.0.1".into(),
        port,
        user,
        key_path: Some(s.dir.path().join("user_key").display().to_string()),
        known_hosts: Some(pin(s).expect("known_hosts written")),
        host_keys: HostKeys::Pinned,
        connect_timeout_secs: 5,
        remote_dir: s.dir.path().display().to_string(),
        max_output: 1 << 20,
    }
}

#[tokio::test]
async fn jobs_run_over_ssh_quoted_with_timeouts_and_health() -> anyhow::Result<()> {
    let server = sshd().await?;
    let ssh = provider(&server, server.port);
    assert_eq!(ssh.health().await.0, Health::Healthy);
    let dead = provider(&server, TcpListener::bind("127.0.0.1:0")?.local_addr()?.port());
    let (h, msg) = dead.health().await;
    assert_eq!(h, Health::Unhealthy, "{msg}");

    let env = env().await?;
    let stop = start_executor(&env, "x-ssh", ProvidersConfig { ssh: Some(ssh), ..ProvidersConfig::default() }).await?;
    let wd = server.dir.path().display().to_string();
    // `;` must reach echo as an argument, not the remote shell as a separator.
    let job = scheduled(
        &env,
        "ssh-1",
        vec![
            step("execute_command", json!({"command": "echo over ssh; touch pwned"})),
            step("check_disk_space", json!({})),
        ],
        &wd,
        "ssh",
        vec![],
    )
    .await?;
    assert_eq!(wait_end(&env, job).await?, "skynet.job.succeeded.v1");
    let out = output(&env, job).await?;
    assert!(out.contains("over ssh; touch pwned"), "{out}");
    assert!(out.contains("Filesystem"), "df -h ran: {out}");
    assert!(!server.dir.path().join("pwned").exists(), "no shell injection");

    let job = scheduled(
        &env,
        "ssh-2",
        vec![step("execute_command", json!({"command": "sleep 20", "timeout": 1}))],
        &wd,
        "ssh",
        vec![],
    )
    .await?;
    assert_eq!(wait_end(&env, job).await?, "skynet.job.timed_out.v1");
    stop.cancel();
    Ok(())
}

/// An `execute_command` step of `command` in the server's directory.
fn command_step(
    server: &Sshd,
    job: &str,
    command: impl Into<String>,
    timeout_secs: u64,
) -> skynet_executor::providers::StepRequest {
    let mut params = std::collections::BTreeMap::new();
    params.insert("command".to_owned(), json!(command.into()));
    skynet_executor::providers::StepRequest {
        job: job.into(),
        step: 0,
        lease: 1,
        action: "execute_command".into(),
        params,
        working_dir: server.dir.path().to_path_buf(),
        timeout: Duration::from_secs(timeout_secs),
    }
}

/// The pids of processes whose whole command line is `line` (on this machine,
/// which is also the ssh server's).
fn pids(line: &str) -> anyhow::Result<String> {
    let ps = Command::new("pgrep").args(["-f", &format!("^{line}$")]).output()?;
    Ok(String::from_utf8_lossy(&ps.stdout).trim().to_owned())
}

#[tokio::test]
async fn an_unknown_host_key_is_refused_unless_the_operator_opts_in() -> anyhow::Result<()> {
    let server = sshd().await?;
    let other = tempfile::tempdir()?;
    // A known_hosts file that holds some other key for this host: a changed key.
    keygen(&other.path().join("k"))?;
    let foreign = std::fs::read_to_string(other.path().join("k.pub"))?;
    let changed = other.path().join("changed_hosts");
    let mut words = foreign.split_whitespace();
    std::fs::write(
        &changed,
        format!("[127.0.0.1]:{} {} {}\n", server.port, words.next().unwrap_or(""), words.next().unwrap_or("")),
    )?;
    let empty = other.path().join("empty_hosts");
    std::fs::write(&empty, "")?;
    let with = |file: &Path, keys: HostKeys| Ssh {
        known_hosts: Some(file.display().to_string()),
        host_keys: keys,
        ..provider(&server, server.port)
    };
    // Pinned (the default): an unknown key and a changed key are both refused.
    assert_eq!(Ssh::default().host_keys, HostKeys::Pinned);
    for file in [&empty, &changed] {
        let (h, msg) = with(file, HostKeys::Pinned).health().await;
        assert_eq!(h, Health::Unhealthy, "{msg}");
        assert!(msg.contains("verification failed"), "{msg}");
    }
    // Opting in trusts the first key and records it; a changed key stays refused.
    let (h, msg) = with(&empty, HostKeys::AcceptNew).health().await;
    assert_eq!(h, Health::Healthy, "{msg}");
    assert!(std::fs::read_to_string(&empty)?.contains("ssh-ed25519"), "the key was recorded");
    let (h, msg) = with(&changed, HostKeys::AcceptNew).health().await;
    assert_eq!(h, Health::Unhealthy, "{msg}");
    // "no checking at all" is not a setting; the earlier setting's name still reads.
    let no = serde_json::from_value::<Ssh>(json!({"host_keys": "no"}));
    assert!(no.is_err(), "host_keys = no must be refused");
    let old = |v: &str| serde_json::from_value::<Ssh>(json!({"strict_host_key_checking": v}));
    assert_eq!(old("yes")?.host_keys, HostKeys::Pinned);
    assert_eq!(old("accept-new")?.host_keys, HostKeys::AcceptNew);
    assert!(old("no").is_err(), "strict_host_key_checking = no must be refused");
    Ok(())
}

#[tokio::test]
async fn a_cancelled_or_dropped_ssh_step_leaves_no_remote_process() -> anyhow::Result<()> {
    let server = sshd().await?;
    let ssh = provider(&server, server.port);
    let env = env().await?;
    let stop =
        start_executor(&env, "x-ssh-c", ProvidersConfig { ssh: Some(ssh.clone()), ..ProvidersConfig::default() })
            .await?;
    let wd = server.dir.path().display().to_string();
    // A remote step that forks: the grandchild must die with it.
    let (a, b) =
        (format!("sleep {}", 200_000 + u32::from(server.port)), format!("sleep {}", 300_000 + u32::from(server.port)));
    let command = format!("sh -c '{a} & {b}'");
    let job =
        scheduled(&env, "ssh-cancel", vec![step("execute_command", json!({ "command": command }))], &wd, "ssh", vec![])
            .await?;
    eventually(Duration::from_secs(10), "the remote processes", || async {
        (!pids(&a).ok()?.is_empty() && !pids(&b).ok()?.is_empty()).then_some(())
    })
    .await?;
    let cancel = skynet_job::Command::Cancel { by: "alice".into(), reason: "stop".into() };
    skynet_testkit::record(env.jobs.store(), job, "cancel", cancel).await?;
    assert_eq!(wait_end(&env, job).await?, "skynet.job.cancelled.v1");
    eventually(Duration::from_secs(5), "the remote processes gone after cancel", || async {
        (pids(&a).ok()?.is_empty() && pids(&b).ok()?.is_empty()).then_some(())
    })
    .await?;
    stop.cancel();

    // Dropped: the step's future goes away (the runner drops a step whose job
    // moved on); the ssh client dies with it, and so does the remote group.
    let req = command_step(&server, "drop", a.clone(), 600);
    let (tx, _rx) = tokio::sync::mpsc::channel(16);
    let running = {
        let ssh = ssh.clone();
        tokio::spawn(async move { ssh.run(&req, tx, &tokio_util::sync::CancellationToken::new()).await })
    };
    eventually(Duration::from_secs(10), "the remote process", || async { (!pids(&a).ok()?.is_empty()).then_some(()) })
        .await?;
    running.abort();
    eventually(Duration::from_secs(5), "the remote process gone after a drop", || async {
        pids(&a).ok()?.is_empty().then_some(())
    })
    .await?;
    Ok(())
}

#[tokio::test]
async fn the_remote_process_dies_when_the_executor_does() -> anyhow::Result<()> {
    let server = sshd().await?;
    let ssh = provider(&server, server.port);
    let line = format!("sleep {}", 400_000 + u32::from(server.port));
    let req = command_step(&server, "killed", line.clone(), 600);
    // Exactly what the provider runs, but with this test as the parent that
    // "dies": a `kill -9`ed executor leaves its ssh client running (it has its
    // own process group) and only closes the client's stdin, which the
    // executor held. Closing it without killing the client is that death.
    let remote = ssh.remote_command(&req).map_err(|e| anyhow::anyhow!(e))?;
    let mut client = Command::new("ssh")
        .args(ssh.argv(&remote))
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()?;
    eventually(Duration::from_secs(10), "the remote process", || async {
        (!pids(&line).ok()?.is_empty()).then_some(())
    })
    .await?;
    drop(client.stdin.take());
    eventually(Duration::from_secs(5), "the remote process gone", || async {
        pids(&line).ok()?.is_empty().then_some(())
    })
    .await?;
    // The orphaned client ends too: nothing of the step is left anywhere.
    let status = eventually(Duration::from_secs(5), "the ssh client to exit", || {
        let exited = client.try_wait().ok().flatten();
        async move { exited }
    })
    .await?;
    assert_eq!(status.code(), Some(137), "the step was killed (128 + SIGKILL)");
    Ok(())
}

#[tokio::test]
async fn a_finished_ssh_step_leaves_nothing_behind() -> anyhow::Result<()> {
    let server = sshd().await?;
    let ssh = provider(&server, server.port);
    let line = format!("sleep {}", 500_000 + u32::from(server.port));
    // The step exits at once, leaving a child in the background.
    let req = command_step(&server, "bg", format!("sh -c '{line} >/dev/null 2>&1 & echo left'"), 30);
    let (tx, _rx) = tokio::sync::mpsc::channel(16);
    let o = ssh.run(&req, tx, &tokio_util::sync::CancellationToken::new()).await;
    assert!(o.succeeded(), "{o:?}");
    assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), "left");
    eventually(Duration::from_secs(5), "the background child gone", || async {
        pids(&line).ok()?.is_empty().then_some(())
    })
    .await?;
    Ok(())
}
