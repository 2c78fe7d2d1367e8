//! CPU time per job, read from `/proc`: what a throughput run cost each
//! process, beside how fast it went.
//!
//! Throughput on a shared 2-core machine swings by a fifth between runs of
//! the same build; the CPU a job costs each process swings far less, so it is
//! the figure that tells whether a change made the work smaller.

use serde::Serialize;

/// Linux reports `/proc` times in `USER_HZ` ticks, fixed at 100 per second
/// for user space on every architecture SKYNET builds for.
const TICKS_PER_SEC: f64 = 100.0;

/// CPU milliseconds per job of a throughput run, by process.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct CpuPerJob {
    /// `skynet up`: every service, the API and the projector.
    pub skynet_up_ms: f64,
    pub nats_server_ms: f64,
    /// The benchmark itself: submitting and watching for the ends.
    pub load_generator_ms: f64,
    /// The rest of the machine's busy time: Postgres above all.
    pub other_ms: f64,
}

/// Busy ticks of the processes and of the machine, at one moment.
#[derive(Debug, Clone, Copy)]
pub struct Sample {
    up: u64,
    nats: u64,
    me: u64,
    machine: u64,
}

impl Sample {
    pub fn take(up_pid: u32, nats_pid: u32) -> Sample {
        Sample {
            up: process_ticks(&up_pid.to_string()),
            nats: process_ticks(&nats_pid.to_string()),
            me: process_ticks("self"),
            machine: machine_busy_ticks(),
        }
    }

    /// What each process spent per job between `self` and `later`.
    pub fn per_job(&self, later: &Sample, jobs: usize) -> CpuPerJob {
        let ms = |a: u64, b: u64| b.saturating_sub(a) as f64 * 1000.0 / TICKS_PER_SEC / jobs.max(1) as f64;
        let up = ms(self.up, later.up);
        let nats = ms(self.nats, later.nats);
        let me = ms(self.me, later.me);
        CpuPerJob {
            skynet_up_ms: up,
            nats_server_ms: nats,
            load_generator_ms: me,
            other_ms: (ms(self.machine, later.machine) - up - nats - me).max(0.0),
        }
    }
}

/// User and system ticks of a process (`/proc/<pid>/stat`, fields 14 and 15,
/// counted after the command name, which may itself hold spaces and parens).
fn process_ticks(pid: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).map_or(0, |stat| parse_process_ticks(&stat))
}

fn parse_process_ticks(stat: &str) -> u64 {
    let Some((_, rest)) = stat.rsplit_once(')') else { return 0 };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // `rest` starts at field 3 (the state).
    let field = |n: usize| fields.get(n - 3).and_then(|f| f.parse::<u64>().ok()).unwrap_or(0);
    field(14) + field(15)
}

/// Ticks every core of this machine spent busy (`/proc/stat`'s `cpu` line).
fn machine_busy_ticks() -> u64 {
    std::fs::read_to_string("/proc/stat").map_or(0, |stat| parse_machine_busy_ticks(&stat))
}

/// The columns are user nice system idle iowait irq softirq steal guest
/// guest_nice: busy is user, nice, system, irq and softirq. Not steal (the
/// hypervisor ran another machine then) nor guest time (already in user).
fn parse_machine_busy_ticks(stat: &str) -> u64 {
    let Some(line) = stat.lines().find(|l| l.starts_with("cpu ")) else { return 0 };
    let ticks: Vec<u64> = line.split_whitespace().skip(1).filter_map(|t| t.parse().ok()).collect();
    [0, 1, 2, 5, 6].iter().filter_map(|&i| ticks.get(i)).sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spinning_shows_up_as_this_process_cpu() {
        let me = std::process::id();
        let before = Sample::take(me, me);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        let mut x = 0u64;
        let cost = loop {
            for _ in 0..1_000_000 {
                x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
            }
            let cost = before.per_job(&Sample::take(me, me), 2);
            if cost.load_generator_ms >= 100.0 || std::time::Instant::now() > deadline {
                break cost;
            }
        };
        std::hint::black_box(x);
        // 200 ms of this process's CPU over two jobs, seen through both
        // readings (read a moment apart: a tick may fall between them).
        assert!(cost.load_generator_ms >= 100.0, "{cost:?}");
        assert!((cost.skynet_up_ms - cost.load_generator_ms).abs() <= 10.0, "{cost:?}");
        assert!(machine_busy_ticks() > 0);
    }

    #[test]
    fn stat_lines_are_read_by_their_columns() {
        // A command name may hold spaces and parentheses; utime 7, stime 4.
        let stat = "42 (a) b (c)) S 1 42 42 0 -1 4194560 100 0 0 0 7 4 0 0 20 0 9 0 1000 0 0";
        assert_eq!(parse_process_ticks(stat), 11);
        assert_eq!(parse_process_ticks("garbage"), 0);
        // user 10, nice 1, system 20, idle 500, iowait 30, irq 2, softirq 3, steal 40, guest 9, guest_nice 0.
        let machine = "cpu  10 1 20 500 30 2 3 40 9 0\ncpu0 5 0 10 250 15 1 1 20 4 0\n";
        assert_eq!(parse_machine_busy_ticks(machine), 36);
        let before = Sample { up: 100, nats: 50, me: 10, machine: 1000 };
        let after = Sample { up: 300, nats: 150, me: 20, machine: 1600 };
        let c = before.per_job(&after, 10);
        // Ticks are 10 ms: 200 ticks over 10 jobs is 200 ms a job.
        assert_eq!((c.skynet_up_ms, c.nats_server_ms, c.load_generator_ms, c.other_ms), (200.0, 100.0, 10.0, 290.0));
    }
}
