//! Running one command as a child process: its own process group (so a timeout
//! or cancel kills everything it started), a scrubbed environment, output read
//! as it comes (streamed in chunks and kept up to a cap), a timeout, and a
//! cancel token.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use skynet_contract::job::OutputStream;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::process::Command;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::StepOutcome;

/// Variables passed through to commands; everything else is removed.
pub const ENV_ALLOW: &[&str] = &["PATH", "HOME", "LANG", "LC_ALL", "TERM", "USER", "LOGNAME", "TMPDIR", "TZ"];

/// How to run one command.
#[derive(Debug)]
pub struct Spawn<'a> {
    pub program: &'a str,
    pub args: &'a [String],
    pub cwd: Option<&'a Path>,
    /// Extra variables (after the allow-list).
    pub env: BTreeMap<String, String>,
    pub timeout: Duration,
    /// Bytes of stdout and of stderr kept (the rest is counted, not kept).
    pub max_output: usize,
    /// Give the child a stdin pipe that stays open, unwritten, while it runs.
    /// It closes when the step ends or this process dies (even by `kill -9`):
    /// the ssh provider's remote wrapper kills its process group on that EOF.
    pub hold_stdin: bool,
}

/// The watched-session wrapper (the ssh provider's remote steps, the local
/// provider's dev servers), run as `sh -c WRAPPER sh LIMIT DIR ARGV...`. fd 3
/// keeps the stdin (the ssh connection's, or the executor's own pipe) for the
/// watcher (an asynchronous list's stdin is /dev/null in a non-interactive
/// shell); the step gets /dev/null. On EOF the watcher kills the step's whole
/// process group (its session, made by setsid). The executor holds that stdin
/// open and never writes it, so the EOF comes when it lets go — or dies, even
/// by `kill -9`.
///
/// When the step itself ends, whatever it left in its group (a background
/// child, a daemon that kept the output open) is killed too: nothing of a step
/// outlives it.
///
/// The step also runs under `timeout -s KILL LIMIT`: if the stdin's end never
/// arrives (a network that parted silently), the step still dies on its own,
/// and `timeout` (the session's leader) takes its whole group with it.
pub const WRAPPER: &str = r#"limit=$1
cd -- "$2" || exit 125
shift 2
exec 3<&0
setsid timeout -s KILL "$limit" "$@" </dev/null 3<&- &
p=$!
{ read -r _ <&3 || :; kill -s KILL -- "-$p" || kill -s KILL "$p"; } >/dev/null 2>&1 &
w=$!
exec 3<&-
wait "$p"; s=$?
kill -s KILL -- "-$p" 2>/dev/null
kill "$w" 2>/dev/null
exit "$s""#;

/// Runs the command; chunks of output go to `chunks` as they arrive.
pub async fn run(
    spec: Spawn<'_>,
    chunks: mpsc::Sender<(OutputStream, String)>,
    cancel: &CancellationToken,
) -> StepOutcome {
    let mut cmd = Command::new(spec.program);
    let stdin = if spec.hold_stdin { Stdio::piped() } else { Stdio::null() };
    cmd.args(spec.args).env_clear().stdin(stdin).stdout(Stdio::piped()).stderr(Stdio::piped());
    for key in ENV_ALLOW {
        if let Some(v) = std::env::var_os(key) {
            cmd.env(key, v);
        }
    }
    cmd.envs(&spec.env);
    if let Some(dir) = spec.cwd {
        cmd.current_dir(dir);
    }
    // A new process group whose id is the child's pid: killpg reaches grandchildren too.
    cmd.process_group(0);
    cmd.kill_on_drop(true);
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => return StepOutcome::error(format!("cannot start {}: {e}", spec.program)),
    };
    let pgid = child.id().and_then(|id| i32::try_from(id).ok());
    // Held (never written) until this function returns.
    let _stdin = child.stdin.take();
    let (Some(out), Some(err)) = (child.stdout.take(), child.stderr.take()) else {
        return StepOutcome::error("child has no output pipes".into());
    };
    let readers = async {
        tokio::join!(
            read(out, OutputStream::Stdout, spec.max_output, chunks.clone()),
            read(err, OutputStream::Stderr, spec.max_output, chunks.clone())
        )
    };
    let kill = |pgid: Option<i32>| {
        if let Some(p) = pgid {
            // The group may already be gone; that is fine.
            let _ = killpg(Pid::from_raw(p), Signal::SIGKILL);
        }
    };
    let waited = async { tokio::join!(child.wait(), readers) };
    tokio::select! {
        (status, ((stdout, out_total), (stderr, err_total))) = waited => {
            let code = status.ok().and_then(|s| s.code());
            let mut o = StepOutcome { exit_code: code, stdout, stderr, ..StepOutcome::default() };
            o.note_truncation(out_total, err_total, spec.max_output);
            if code.is_none() {
                o.error = Some("killed by a signal".into());
            }
            o
        }
        () = tokio::time::sleep(spec.timeout) => {
            kill(pgid);
            StepOutcome { timed_out: true, error: Some(format!("timed out after {} s", spec.timeout.as_secs_f64())), ..StepOutcome::default() }
        }
        () = cancel.cancelled() => {
            kill(pgid);
            StepOutcome { cancelled: true, error: Some("cancelled".into()), ..StepOutcome::default() }
        }
    }
}

/// Reads a pipe to the end, keeping at most `cap` bytes and forwarding chunks.
async fn read(
    mut pipe: impl AsyncRead + Unpin,
    stream: OutputStream,
    cap: usize,
    chunks: mpsc::Sender<(OutputStream, String)>,
) -> (Vec<u8>, usize) {
    let mut kept = Vec::new();
    let mut total = 0usize;
    let mut buf = vec![0u8; 8192];
    loop {
        match pipe.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                total += n;
                let room = cap.saturating_sub(kept.len());
                kept.extend_from_slice(&buf[..n.min(room)]);
                // Live view only; a full channel drops the chunk (the stored log has it).
                let _ = chunks.try_send((stream, String::from_utf8_lossy(&buf[..n]).into_owned()));
            }
        }
    }
    (kept, total)
}
