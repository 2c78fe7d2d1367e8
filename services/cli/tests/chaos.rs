//! The fault suite, small: `skynet chaos` with every service a process of its
//! own, kill -9s every 800 ms, a nats-server restart and a 3 s Postgres
//! outage. Nothing may be lost or doubled and the read models must equal a
//! rebuild. (`skynet chaos` with no options is the full size: 1,000 jobs and a
//! 30 s outage.)

use std::process::Command;

#[test]
fn sixty_jobs_through_kills_a_nats_restart_and_a_postgres_outage_lose_nothing() -> anyhow::Result<()> {
    let out = Command::new(env!("CARGO_BIN_EXE_skynet"))
        .args(["chaos", "--jobs", "60", "--rate", "20", "--executors", "2", "--kill-every-ms", "800"])
        .args(["--pg-outage-secs", "3", "--step-ms", "100", "--json"])
        .env("SKYNET_LOG", "warn")
        .output()?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    anyhow::ensure!(
        out.status.success(),
        "chaos failed ({}):\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let r: serde_json::Value = serde_json::from_str(&stdout)?;
    assert_eq!(r["jobs"], 60);
    assert_eq!(r["lost"], 0, "{r}");
    assert_eq!(r["doubled_terminal"], 0, "{r}");
    assert_eq!(r["steps_recorded_twice"], 0, "{r}");
    assert_eq!(r["read_models_equal_rebuild"], true, "{r}");
    assert_eq!(r["quarantined"], 0, "{r}");
    // The faults happened: processes were killed, the server restarted.
    let kills: u64 =
        r["kills"].as_object().map(|k| k.values().filter_map(serde_json::Value::as_u64).sum()).unwrap_or(0);
    assert!(kills >= 5, "{r}");
    assert_eq!(r["nats_restarts"], 1, "{r}");
    // Jobs end as the mock step does: all succeed (none failed for the faults).
    assert_eq!(r["succeeded"], 60, "{r}");
    Ok(())
}
