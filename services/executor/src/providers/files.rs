//! The actions that write files, done by the executor itself rather than by a
//! command: `file_write` and `create_directory`. Their paths were checked
//! against the sandbox just before (the caller's `check_paths`); here the last
//! component is never followed through a symbolic link, writes go through a
//! temporary file in the same directory and a rename (a reader sees the old
//! content or the new, never half), and content is capped.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use super::StepOutcome;

/// The actions done here (the local provider only: they touch this machine).
pub const ACTIONS: &[&str] = &["file_write", "create_directory"];

/// Largest content `file_write` writes.
pub const MAX_WRITE_BYTES: usize = 1024 * 1024;

/// How `file_write` treats an existing file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Only a new file; an existing one is an error (the default).
    Create,
    Overwrite,
    Append,
}

impl Mode {
    pub fn parse(word: Option<&str>) -> Result<Mode, String> {
        match word {
            None | Some("create") => Ok(Mode::Create),
            Some("overwrite") => Ok(Mode::Overwrite),
            Some("append") => Ok(Mode::Append),
            Some(other) => Err(format!("mode {other:?} is not one of create, overwrite, append")),
        }
    }
}

fn done(text: String) -> StepOutcome {
    StepOutcome { exit_code: Some(0), stdout: text.into_bytes(), ..StepOutcome::default() }
}

/// Writes `content` to `path` as `mode` says.
pub fn write(path: &Path, content: &str, mode: Mode) -> StepOutcome {
    if content.len() > MAX_WRITE_BYTES {
        return StepOutcome::error(format!(
            "content of {} bytes is over the {MAX_WRITE_BYTES}-byte limit",
            content.len()
        ));
    }
    let shown = path.display();
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_symlink() => {
            return StepOutcome::error(format!("{shown} is a symbolic link; refused"));
        }
        Ok(m) if !m.is_file() => return StepOutcome::error(format!("{shown} exists and is not a regular file")),
        Ok(_) if mode == Mode::Create => {
            return StepOutcome::error(format!("{shown} already exists (mode create; use overwrite or append)"));
        }
        _ => {}
    }
    if mode == Mode::Append {
        let opened = std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .custom_flags(nix::libc::O_NOFOLLOW)
            .open(path)
            .and_then(|mut f| f.write_all(content.as_bytes()).and_then(|()| f.sync_all()));
        return match opened {
            Ok(()) => done(format!("appended {} bytes to {shown}\n", content.len())),
            Err(e) => StepOutcome::error(format!("cannot append to {shown}: {e}")),
        };
    }
    let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
        return StepOutcome::error(format!("{shown} names no file"));
    };
    let tmp = dir.join(format!(".{}.skynet-{}.tmp", name.to_string_lossy(), uuid::Uuid::new_v4().simple()));
    let written = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .custom_flags(nix::libc::O_NOFOLLOW)
        .mode(0o644)
        .open(&tmp)
        .and_then(|mut f| f.write_all(content.as_bytes()).and_then(|()| f.sync_all()));
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return StepOutcome::error(format!("cannot write {shown}: {e}"));
    }
    // Create: a hard link fails if the name exists meanwhile (no replace).
    // Overwrite: rename replaces the directory entry, never what a link names.
    let placed = match mode {
        Mode::Create => std::fs::hard_link(&tmp, path).and_then(|()| std::fs::remove_file(&tmp)),
        _ => std::fs::rename(&tmp, path),
    };
    match placed {
        Ok(()) => done(format!("wrote {} bytes to {shown}\n", content.len())),
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            StepOutcome::error(format!("cannot write {shown}: {e}"))
        }
    }
}

/// Creates the directory `path`; one that exists is fine. Without `parents`
/// its parent must exist; with it, each missing ancestor is created in turn,
/// one level at a time, and none may turn out to be a symbolic link (one
/// swapped in since the sandbox check is refused, not followed).
pub fn create_directory(path: &Path, parents: bool) -> StepOutcome {
    let shown = path.display();
    let mut levels: Vec<&Path> = if parents { path.ancestors().collect() } else { vec![path] };
    levels.reverse();
    let mut created = 0usize;
    for level in levels {
        match std::fs::create_dir(level) {
            Ok(()) => created += 1,
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return StepOutcome::error(format!("cannot create {shown}: {}: {e}", level.display())),
        }
        match std::fs::symlink_metadata(level) {
            Ok(m) if m.is_dir() => {}
            Ok(m) if m.file_type().is_symlink() => {
                return StepOutcome::error(format!("{} is a symbolic link; refused", level.display()));
            }
            _ => return StepOutcome::error(format!("{} exists and is not a directory", level.display())),
        }
    }
    match created {
        0 => done(format!("{shown} already exists\n")),
        _ => done(format!("created {shown}\n")),
    }
}
