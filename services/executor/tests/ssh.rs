//! The ssh provider against a real `sshd` started by the test on a loopback
//! port, with its own host key and an authorized key made for the test.

mod common;

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::*;
use serde_json::json;
use skynet_contract::executor::Health;
use skynet_executor::ProvidersConfig;
use skynet_executor::providers::ssh::Ssh;
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

fn provider(s: &Sshd, port: u16) -> Ssh {
    let user = String::from_utf8_lossy(&Command::new("id").arg("-un").output().map(|o| o.stdout).unwrap_or_default())
        .trim()
        .to_owned();
    Ssh {
        host: "127.0.0.1".into(),
        port,
        user,
        key_path: Some(s.dir.path().join("user_key").display().to_string()),
        known_hosts: Some(s.dir.path().join("known_hosts").display().to_string()),
        strict_host_key_checking: "accept-new".into(),
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
