//! Path containment, checked after canonicalisation: `..` components and
//! symbolic links are resolved first, so neither can lead out of a root.

use std::path::{Path, PathBuf};

/// Why a path was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SandboxError {
    #[error("working directory {path:?} does not exist or cannot be resolved")]
    Unresolvable { path: String },
    #[error("working directory {resolved:?} (from {path:?}) is outside every allowed root {roots:?}")]
    Outside { path: String, resolved: PathBuf, roots: Vec<PathBuf> },
    #[error("working directory {resolved:?} (from {path:?}) is inside denied path {denied:?}")]
    Denied { path: String, resolved: PathBuf, denied: PathBuf },
    #[error("path {path:?} is a symbolic link; only the file it points to may be named")]
    Symlink { path: String },
    #[error("path {path:?} has no ancestor that exists, or names `..` or `.` where nothing exists yet")]
    BadPath { path: String },
}

/// Expands a leading `~` to `$HOME`.
pub fn expand_home(path: &str) -> PathBuf {
    match (path.strip_prefix('~'), std::env::var_os("HOME")) {
        (Some(rest), Some(home)) => PathBuf::from(home).join(rest.trim_start_matches('/')),
        _ => PathBuf::from(path),
    }
}

/// Canonical forms of configured roots; roots that do not exist are dropped
/// (nothing can be inside them).
pub fn canonical_roots(roots: &[String]) -> Vec<PathBuf> {
    roots.iter().filter_map(|r| std::fs::canonicalize(expand_home(r)).ok()).collect()
}

/// Canonical forms of configured denied paths. Unlike roots, a denied path
/// that does not exist yet is kept — as its deepest existing ancestor,
/// canonicalised, joined with the missing rest — so nothing can create it.
pub fn canonical_denied(paths: &[String]) -> Vec<PathBuf> {
    paths.iter().filter_map(|p| resolve_missing(&expand_home(p))).collect()
}

/// `path` canonicalised as far as it exists, the missing rest (plain names
/// only) appended; `None` if an ancestor exists but cannot be resolved (a
/// dangling link) or the rest is not plain names.
fn resolve_missing(path: &Path) -> Option<PathBuf> {
    let mut at = path;
    let existing = loop {
        match std::fs::canonicalize(at) {
            Ok(c) => break c,
            // Present but unresolvable (a dangling or looping link): not "missing".
            Err(_) if std::fs::symlink_metadata(at).is_ok() => return None,
            Err(_) => at = at.parent()?,
        }
    };
    let rest = path.strip_prefix(at).ok()?;
    rest.components().all(|c| matches!(c, std::path::Component::Normal(_))).then(|| existing.join(rest))
}

/// Resolves `path` and checks it lies inside one of `allowed` and inside none
/// of `denied` (all canonical). Returns the canonical path.
pub fn check(path: &str, allowed: &[PathBuf], denied: &[PathBuf]) -> Result<PathBuf, SandboxError> {
    let resolved =
        std::fs::canonicalize(expand_home(path)).map_err(|_| SandboxError::Unresolvable { path: path.to_owned() })?;
    contain(path, resolved, allowed, denied)
}

/// `resolved` (the canonical form of `path`) inside an allowed root and no
/// denied path, or why not.
fn contain(path: &str, resolved: PathBuf, allowed: &[PathBuf], denied: &[PathBuf]) -> Result<PathBuf, SandboxError> {
    if let Some(d) = denied.iter().find(|d| resolved.starts_with(d)) {
        return Err(SandboxError::Denied { path: path.to_owned(), resolved, denied: d.clone() });
    }
    if allowed.iter().any(|root| resolved.starts_with(root)) {
        Ok(resolved)
    } else {
        Err(SandboxError::Outside { path: path.to_owned(), resolved, roots: allowed.to_vec() })
    }
}

/// Resolves `path` — relative to `base` unless absolute — which may not exist
/// yet (a file to write, a directory to create): an existing path is
/// canonicalised whole, but must not itself be a symbolic link; for a new one
/// the deepest existing ancestor is canonicalised and the missing rest must be
/// plain names. The result must lie inside an
/// allowed root and inside no denied path.
pub fn check_path(path: &str, base: &Path, allowed: &[PathBuf], denied: &[PathBuf]) -> Result<PathBuf, SandboxError> {
    let bad = || SandboxError::BadPath { path: path.to_owned() };
    let expanded = expand_home(path);
    let full = if expanded.is_absolute() { expanded } else { base.join(expanded) };
    let resolved = match std::fs::symlink_metadata(&full) {
        Ok(m) if m.file_type().is_symlink() => return Err(SandboxError::Symlink { path: path.to_owned() }),
        Ok(_) => std::fs::canonicalize(&full).map_err(|_| SandboxError::Unresolvable { path: path.to_owned() })?,
        Err(_) => {
            // The deepest ancestor that exists, canonicalised, and the missing
            // rest: plain names only (no `..` to climb back out through).
            if full.file_name().is_none_or(|n| n == "." || n == "..") {
                return Err(bad());
            }
            resolve_missing(&full).ok_or_else(bad)?
        }
    };
    contain(path, resolved, allowed, denied)
}

/// The sandbox's roots and denied paths, canonicalised once: what one decision
/// checks every directory and path of a job against.
///
/// Each canonical form costs a `realpath` (a system call per component), and a
/// plan's check resolves every configured path: a job's policy decision and
/// its spec each used to do so for the job and again for every step, which
/// made path resolution the largest single item of the control plane's CPU.
/// One snapshot per decision keeps what the checks mean (the configured paths
/// as they resolve at the moment of the decision) and resolves each once.
/// Never keep one across decisions: a link swapped in later must count.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bounds {
    pub allowed: Vec<PathBuf>,
    pub denied: Vec<PathBuf>,
}

impl Bounds {
    /// `roots` and `denied` as they resolve now (see [`canonical_roots`] and
    /// [`canonical_denied`]).
    pub fn now(roots: &[String], denied: &[String]) -> Bounds {
        Bounds { allowed: canonical_roots(roots), denied: canonical_denied(denied) }
    }

    /// [`check`] against these bounds.
    pub fn check(&self, path: &str) -> Result<PathBuf, SandboxError> {
        check(path, &self.allowed, &self.denied)
    }

    /// Checks a step's directory `dir`: a relative one is the job's
    /// (`job_dir`), never that of the process checking it (whose own working
    /// directory may well be an allowed root).
    pub fn check_step_dir(&self, dir: &str, job_dir: &str) -> Result<PathBuf, SandboxError> {
        let full = Path::new(job_dir).join(expand_home(dir));
        self.check(&full.to_string_lossy())
    }

    /// [`check_path`] against these bounds.
    pub fn check_path(&self, path: &str, base: &Path) -> Result<PathBuf, SandboxError> {
        check_path(path, base, &self.allowed, &self.denied)
    }

    /// Where a job that names no directory runs: the first root that exists
    /// (the predecessor's default sandbox root).
    pub fn default_dir(&self) -> Option<String> {
        self.allowed.first().map(|p| p.display().to_string())
    }
}

/// Whether `path` is `root` or below it (component-wise: `/a/bc` is not under `/a/b`).
pub fn is_within(path: &Path, root: &Path) -> bool {
    path.starts_with(root)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dotdot_and_symlinks_cannot_escape() -> std::io::Result<()> {
        let base = tempfile::tempdir()?;
        let root = base.path().join("root");
        let outside = base.path().join("outside");
        std::fs::create_dir_all(root.join("proj"))?;
        std::fs::create_dir_all(&outside)?;
        std::os::unix::fs::symlink(&outside, root.join("link"))?;
        let allowed = canonical_roots(&[root.display().to_string()]);
        let p = |s: &Path| s.display().to_string();

        assert!(check(&p(&root.join("proj")), &allowed, &[]).is_ok());
        assert!(matches!(
            check(&p(&root.join("proj/../../outside")), &allowed, &[]),
            Err(SandboxError::Outside { .. })
        ));
        assert!(matches!(check(&p(&root.join("link")), &allowed, &[]), Err(SandboxError::Outside { .. })));
        assert!(matches!(check(&p(&root.join("missing")), &allowed, &[]), Err(SandboxError::Unresolvable { .. })));
        let denied = canonical_roots(&[p(&root.join("proj"))]);
        assert!(matches!(check(&p(&root.join("proj")), &allowed, &denied), Err(SandboxError::Denied { .. })));
        // A sibling sharing a prefix is not inside.
        std::fs::create_dir_all(base.path().join("rootx"))?;
        assert!(check(&p(&base.path().join("rootx")), &allowed, &[]).is_err());
        Ok(())
    }

    #[test]
    fn paths_that_may_not_exist_are_resolved_and_contained() -> std::io::Result<()> {
        let base = tempfile::tempdir()?;
        let root = std::fs::canonicalize(base.path())?.join("root");
        std::fs::create_dir_all(root.join("proj"))?;
        std::fs::write(root.join("proj/notes.txt"), "x")?;
        std::fs::write(base.path().join("secret"), "s")?;
        std::os::unix::fs::symlink(base.path().join("secret"), root.join("proj/link"))?;
        let allowed = vec![root.clone()];
        let proj = root.join("proj");
        assert_eq!(check_path("notes.txt", &proj, &allowed, &[]), Ok(proj.join("notes.txt")));
        assert_eq!(check_path("new.txt", &proj, &allowed, &[]), Ok(proj.join("new.txt")));
        assert!(matches!(check_path("../../secret", &proj, &allowed, &[]), Err(SandboxError::Outside { .. })));
        assert!(matches!(check_path("link", &proj, &allowed, &[]), Err(SandboxError::Symlink { .. })));
        assert_eq!(check_path("missing/new.txt", &proj, &allowed, &[]), Ok(proj.join("missing/new.txt")));
        assert!(matches!(check_path("missing/../../../x", &proj, &allowed, &[]), Err(SandboxError::BadPath { .. })));
        assert!(matches!(check_path("link/new", &proj, &allowed, &[]), Err(SandboxError::Outside { .. })));
        // A dangling link is not a missing directory to create through.
        std::os::unix::fs::symlink(base.path().join("nowhere"), root.join("proj/dangling"))?;
        assert!(matches!(check_path("dangling/x", &proj, &allowed, &[]), Err(SandboxError::BadPath { .. })));
        // A denied path that does not exist yet cannot be created.
        let denied = canonical_denied(&[proj.join("secrets/keys").display().to_string()]);
        assert_eq!(denied, [proj.join("secrets/keys")]);
        assert!(matches!(check_path("secrets/keys/id", &proj, &allowed, &denied), Err(SandboxError::Denied { .. })));
        assert!(check_path("..", &proj, &allowed, &[]).is_ok(), "an existing `..` is just its directory");
        assert!(matches!(check_path("/etc/passwd", &proj, &allowed, &[]), Err(SandboxError::Outside { .. })));
        Ok(())
    }

    #[test]
    fn each_snapshot_resolves_the_configured_paths_afresh() -> std::io::Result<()> {
        let base = tempfile::tempdir()?;
        let root = std::fs::canonicalize(base.path())?.join("root");
        std::fs::create_dir_all(root.join("proj"))?;
        let (roots, denied) = (vec![root.display().to_string()], vec![root.join("secret").display().to_string()]);
        let before = Bounds::now(&roots, &denied);
        let proj = root.join("proj").display().to_string();
        assert_eq!(before.check(&proj), Ok(root.join("proj")));
        // The denied path appears, as a link to the project: a decision taken
        // from now on must refuse the project, whatever an older one allowed.
        std::os::unix::fs::symlink(root.join("proj"), root.join("secret"))?;
        let after = Bounds::now(&roots, &denied);
        assert!(matches!(after.check(&proj), Err(SandboxError::Denied { .. })), "{:?}", after.check(&proj));
        assert!(matches!(after.check_step_dir("proj", &root.display().to_string()), Err(SandboxError::Denied { .. })));
        assert!(matches!(after.check_path("proj/new.txt", &root), Err(SandboxError::Denied { .. })));
        assert_eq!(after.default_dir(), Some(root.display().to_string()));
        assert_eq!(before.check(&proj), Ok(root.join("proj")), "a snapshot is what it was");
        Ok(())
    }
}
