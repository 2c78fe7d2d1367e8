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

/// Resolves `path` and checks it lies inside one of `allowed` and inside none
/// of `denied` (all canonical). Returns the canonical path.
pub fn check(path: &str, allowed: &[PathBuf], denied: &[PathBuf]) -> Result<PathBuf, SandboxError> {
    let resolved =
        std::fs::canonicalize(expand_home(path)).map_err(|_| SandboxError::Unresolvable { path: path.to_owned() })?;
    if let Some(d) = denied.iter().find(|d| resolved.starts_with(d)) {
        return Err(SandboxError::Denied { path: path.to_owned(), resolved, denied: d.clone() });
    }
    if allowed.iter().any(|root| resolved.starts_with(root)) {
        Ok(resolved)
    } else {
        Err(SandboxError::Outside { path: path.to_owned(), resolved, roots: allowed.to_vec() })
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
}
