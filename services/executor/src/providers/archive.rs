//! `zip_project`: an archive of the step's working directory, written by the
//! executor itself (the `zip` crate; no shell, no `zip` program), stored as the
//! job's artifact with its size and SHA-256 (by the runner).
//!
//! What goes in is what the project would commit: the walk honours its
//! `.gitignore`, `.ignore` and `.git/info/exclude` (not the host's global git
//! excludes, so two executors make the same archive), leaves out `.git`, and
//! never follows a symbolic link — a link is listed as skipped, so one pointing
//! out of the sandbox cannot smuggle a file into the archive. Denied paths
//! inside the tree (SKYNET's own data, keys) are left out and listed as such.
//! Each file is opened without following a link, must still be the regular
//! file the walk saw (same device and inode), and is read only up to the size
//! the walk saw; the archive itself is never read into itself; bytes, entries
//! and the listing are capped, and a timeout or cancel stops the walk between
//! files.

use std::io::{Read, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio_util::sync::CancellationToken;

use super::{Produced, StepOutcome};

/// Most bytes of files read into one archive.
pub const MAX_INPUT_BYTES: u64 = 64 * 1024 * 1024;
/// Most entries in one archive.
pub const MAX_ENTRIES: usize = 100_000;
/// Lines of the listing kept in the step's output.
const MAX_LISTED: usize = 2_000;

/// Archives `dir` (canonical, checked against the sandbox by the caller),
/// leaving out everything under `denied` (canonical).
pub async fn zip_project(
    dir: PathBuf,
    denied: Vec<PathBuf>,
    timeout: std::time::Duration,
    cancel: &CancellationToken,
) -> StepOutcome {
    // Set when the step ends early: the walk stops at its next file.
    let stop = Arc::new(AtomicBool::new(false));
    let _stop_on_drop = StopOnDrop(stop.clone());
    let work = tokio::task::spawn_blocking(move || build(&dir, &denied, &stop));
    tokio::select! {
        r = work => match r {
            Ok(Ok(o)) => o,
            Ok(Err(e)) => StepOutcome::error(e),
            Err(e) => StepOutcome::error(format!("archiving failed: {e}")),
        },
        // The blocking walk finishes on its own; its temporary file is removed
        // when its result is dropped.
        () = tokio::time::sleep(timeout) => StepOutcome {
            timed_out: true,
            error: Some(format!("timed out after {} s", timeout.as_secs_f64())),
            ..StepOutcome::default()
        },
        () = cancel.cancelled() => StepOutcome { cancelled: true, error: Some("cancelled".into()), ..StepOutcome::default() },
    }
}

struct StopOnDrop(Arc<AtomicBool>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// A name as the listing shows it: control characters escaped, so a file
/// name cannot forge a line.
fn shown(name: &str) -> String {
    name.chars().flat_map(char::escape_debug).collect::<String>().replace("\\'", "'").replace("\\\"", "\"")
}

fn build(dir: &Path, denied: &[PathBuf], stop: &AtomicBool) -> Result<StepOutcome, String> {
    let name = format!("{}.zip", dir.file_name().map_or_else(|| "project".into(), |n| n.to_string_lossy()));
    let tmp = tempfile::Builder::new()
        .prefix("skynet-zip-")
        .suffix(".zip")
        .tempfile()
        .map_err(|e| format!("cannot create a temporary archive: {e}"))?;
    // The archive must never read itself (the temporary directory may be
    // inside the tree): known by device and inode.
    let own = tmp.as_file().metadata().map(|m| (m.dev(), m.ino())).map_err(|e| format!("temporary archive: {e}"))?;
    let mut zip = zip::ZipWriter::new(tmp.reopen().map_err(|e| format!("cannot open the temporary archive: {e}"))?);
    let denied_inside: Vec<PathBuf> = denied.iter().filter(|d| d.starts_with(dir) && *d != dir).cloned().collect();
    if denied.iter().any(|d| dir.starts_with(d)) {
        return Err(format!("{} is inside a denied path; refused", dir.display()));
    }
    let pruned = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let (pruned_in, base) = (pruned.clone(), dir.to_path_buf());
    let walk = ignore::WalkBuilder::new(dir)
        .hidden(false)
        .parents(false)
        .git_global(false)
        .require_git(false)
        .follow_links(false)
        .sort_by_file_name(Ord::cmp)
        .filter_entry(move |e| {
            if e.file_name() == ".git" {
                return false;
            }
            let keep = !denied_inside.iter().any(|d| e.path() == d.as_path());
            if !keep && let (Ok(rel), Ok(mut p)) = (e.path().strip_prefix(&base), pruned_in.lock()) {
                p.push(rel.to_string_lossy().into_owned());
            }
            keep
        })
        .build();
    let (mut listing, mut listed, mut files, mut bytes) = (String::new(), 0usize, 0u64, 0u64);
    let mut line = |listing: &mut String, text: String| {
        listed += 1;
        if listed <= MAX_LISTED {
            listing.push_str(&text);
        }
    };
    let mut entries = 0usize;
    for entry in walk {
        if stop.load(Ordering::Relaxed) {
            return Err("archiving stopped".into());
        }
        entries += 1;
        if entries > MAX_ENTRIES {
            return Err(format!("the project holds more than {MAX_ENTRIES} entries to archive; refused"));
        }
        let entry = entry.map_err(|e| format!("cannot walk {}: {e}", dir.display()))?;
        let path = entry.path();
        let Ok(rel) = path.strip_prefix(dir) else { continue };
        if rel.as_os_str().is_empty() {
            continue;
        }
        let rel_name = rel.to_string_lossy().into_owned();
        let meta = std::fs::symlink_metadata(path).map_err(|e| format!("cannot read {}: {e}", shown(&rel_name)))?;
        let kind = meta.file_type();
        if kind.is_symlink() {
            line(&mut listing, format!("skipped (symbolic link, not followed): {}\n", shown(&rel_name)));
            continue;
        }
        if (meta.dev(), meta.ino()) == own {
            continue;
        }
        let options = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Deflated)
            .unix_permissions(std::os::unix::fs::PermissionsExt::mode(&meta.permissions()) & 0o777);
        if kind.is_dir() {
            zip.add_directory(format!("{rel_name}/"), options).map_err(|e| format!("archiving {rel_name}: {e}"))?;
            continue;
        }
        if !kind.is_file() {
            line(&mut listing, format!("skipped (not a regular file): {}\n", shown(&rel_name)));
            continue;
        }
        bytes += meta.len();
        if bytes > MAX_INPUT_BYTES {
            return Err(format!("the project holds more than {MAX_INPUT_BYTES} bytes to archive; refused"));
        }
        let file = open_regular(path, &meta).map_err(|e| format!("cannot read {}: {e}", shown(&rel_name)))?;
        zip.start_file(rel_name.as_str(), options).map_err(|e| format!("archiving {}: {e}", shown(&rel_name)))?;
        // No more than the walk saw: a file growing meanwhile cannot grow the archive.
        std::io::copy(&mut file.take(meta.len()), &mut zip)
            .map_err(|e| format!("archiving {}: {e}", shown(&rel_name)))?;
        line(&mut listing, format!("{:>10}  {}\n", meta.len(), shown(&rel_name)));
        files += 1;
    }
    let mut out = zip.finish().map_err(|e| format!("finishing the archive: {e}"))?;
    out.flush().map_err(|e| format!("finishing the archive: {e}"))?;
    if listed > MAX_LISTED {
        listing.push_str(&format!("[{} more lines not shown]\n", listed - MAX_LISTED));
    }
    for p in pruned.lock().map(|p| p.clone()).unwrap_or_default() {
        listing.push_str(&format!("skipped (denied path): {}\n", shown(&p)));
    }
    listing.push_str(&format!("{files} files, {bytes} bytes archived as {name}\n"));
    let path = tmp.into_temp_path();
    Ok(StepOutcome {
        exit_code: Some(0),
        stdout: listing.into_bytes(),
        produced: vec![Produced::new(name, path)],
        ..StepOutcome::default()
    })
}

/// Opens a file the walk found, refusing one replaced since by a link or by
/// anything but the same regular file (a FIFO would block the walk forever).
fn open_regular(path: &Path, seen: &std::fs::Metadata) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    let f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_NOFOLLOW | nix::libc::O_NONBLOCK)
        .open(path)?;
    let now = f.metadata()?;
    if !now.is_file() || (now.dev(), now.ino()) != (seen.dev(), seen.ino()) {
        return Err(std::io::Error::other("replaced since it was listed; refused"));
    }
    Ok(f)
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    use super::*;

    #[tokio::test]
    async fn honours_gitignore_and_never_follows_a_link_out() -> Result<(), Box<dyn std::error::Error>> {
        let base = tempfile::tempdir()?;
        let proj = base.path().join("proj");
        std::fs::create_dir_all(proj.join("src"))?;
        std::fs::create_dir_all(proj.join("target/debug"))?;
        std::fs::create_dir_all(proj.join(".git"))?;
        std::fs::write(proj.join(".gitignore"), "target/\n*.log\n")?;
        std::fs::write(proj.join("src/main.rs"), "fn main() {}\n")?;
        std::fs::write(proj.join("debug.log"), "noise")?;
        std::fs::write(proj.join("target/debug/bin"), "binary")?;
        std::fs::write(proj.join(".git/HEAD"), "ref: refs/heads/main\n")?;
        std::fs::write(base.path().join("secret"), "do not ship")?;
        std::os::unix::fs::symlink(base.path().join("secret"), proj.join("leak"))?;
        std::os::unix::fs::symlink(base.path(), proj.join("outside"))?;

        std::fs::create_dir_all(proj.join(".data"))?;
        std::fs::write(proj.join(".data/api-token"), "secret token")?;
        let denied = vec![std::fs::canonicalize(proj.join(".data"))?];
        let proj = std::fs::canonicalize(&proj)?;
        std::fs::write(proj.join("line\nbreak"), "x")?;
        let o = zip_project(proj.clone(), denied, std::time::Duration::from_secs(30), &CancellationToken::new()).await;
        assert!(o.succeeded(), "{o:?}");
        let listing = String::from_utf8(o.stdout.clone())?;
        assert!(listing.contains("skipped (symbolic link, not followed): leak"), "{listing}");
        assert!(listing.contains("skipped (denied path): .data"), "{listing}");
        assert!(listing.contains("line\\nbreak") && !listing.contains("line\nbreak"), "names are escaped: {listing}");
        let [made] = o.produced.as_slice() else { panic!("one archive: {:?}", o.produced) };
        assert_eq!(made.name, "proj.zip");
        let mut archive = zip::ZipArchive::new(std::fs::File::open(made.path())?)?;
        let mut names: Vec<String> = archive.file_names().map(str::to_owned).collect();
        names.sort();
        assert_eq!(names, [".gitignore", "line\nbreak", "src/", "src/main.rs"]);
        let mut text = String::new();
        archive.by_name("src/main.rs")?.read_to_string(&mut text)?;
        assert_eq!(text, "fn main() {}\n");
        // The archive is not in the tree it read, and goes when dropped.
        let at = made.path().to_path_buf();
        assert!(!at.starts_with(&proj));
        drop(o);
        assert!(!at.exists());
        Ok(())
    }
}
