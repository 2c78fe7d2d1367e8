//! The benchmark checked on a tiny run: it must count only jobs that really
//! succeeded, report every figure, and fail loudly when a job is lost (the
//! tally's own unit tests cover the lost and failed cases).

use std::process::Command;

#[test]
fn a_quick_benchmark_reports_every_figure_and_counts_every_job() {
    let out = Command::new(env!("CARGO_BIN_EXE_skynet"))
        .args(["bench", "--quick", "--json", "--mode", "fast"])
        .env("SKYNET_LOG", "error")
        .output()
        .expect("run skynet bench");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "bench failed: {stderr}");
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON report");
    let s = &r["system"][0];
    assert_eq!(s["mode"], "fast");
    assert_eq!(s["jobs_submitted"], 30);
    assert_eq!(s["jobs_succeeded"], s["jobs_submitted"], "every submitted job counted as succeeded exactly once");
    assert_eq!(s["latency"]["jobs"], 10);
    for figure in [
        "raw_publish_per_sec",
        "raw_consume_ack_per_sec",
        "ceiling_jobs_per_sec",
        "throughput_jobs_per_sec",
        "rebuild_events_per_sec",
        "rss_idle_mib",
        "memory_events_per_sec",
        "without_sentinel_jobs_per_sec",
    ] {
        assert!(s[figure].as_f64().is_some_and(|v| v > 0.0), "{figure} in {s}");
    }
    assert!(s["events_per_job"].as_f64().is_some_and(|v| (5.0..=20.0).contains(&v)), "{s}");
    // Every stream's appends, the events among them.
    assert!(s["stored_per_job"].as_f64() >= s["events_per_job"].as_f64(), "{s}");
    assert!(s["latency"]["p50_ms"].as_f64() <= s["latency"]["p99_ms"].as_f64());
    let scaling = r["scaling"].as_array().expect("scaling");
    assert_eq!(scaling.iter().map(|p| p["executors"].as_u64().unwrap_or(0)).collect::<Vec<_>>(), [1, 2]);
    assert_eq!(scaling[0]["ratio"], 1.0);
    let m = &r["memory"];
    assert_eq!((m["records"].as_u64(), m["queries"].as_u64()), (Some(2000), Some(50)), "{m}");
    assert!(m["p50_ms"].as_f64() <= m["p99_ms"].as_f64() && m["p99_ms"].as_f64().is_some_and(|v| v > 0.0), "{m}");
    assert!(m["found_share"].as_f64().is_some_and(|v| v >= 0.5), "queries find their records: {m}");
    let log = &r["log"][0];
    assert_eq!(log["events"], log["events_replayed"], "replay returned every appended event");
}
