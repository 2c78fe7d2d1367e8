//! Principals: the named people and programs that hold API tokens, with the
//! roles that say what each may do. Approvers, deniers and cancellers in the log
//! are principals — authenticated by their token, never a name a request body
//! claims.
//!
//! A principal's record is stored under the SHA-256 of its token (the token
//! itself is shown once and never kept by SKYNET), so verifying a token is one
//! lookup and a holder of the store cannot recover any token.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// What a principal may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum PrincipalRole {
    /// Submit tasks and execution requests, record reports, cancel own jobs.
    Submit,
    /// Approve, deny and cancel any job.
    Approve,
    /// Read jobs, history and step output.
    Read,
    /// Everything.
    Admin,
}

impl PrincipalRole {
    pub const ALL: &'static [PrincipalRole] =
        &[PrincipalRole::Submit, PrincipalRole::Approve, PrincipalRole::Read, PrincipalRole::Admin];

    pub fn as_str(self) -> &'static str {
        match self {
            PrincipalRole::Submit => "submit",
            PrincipalRole::Approve => "approve",
            PrincipalRole::Read => "read",
            PrincipalRole::Admin => "admin",
        }
    }

    pub fn parse(s: &str) -> Option<PrincipalRole> {
        PrincipalRole::ALL.iter().copied().find(|r| r.as_str() == s.trim().to_ascii_lowercase())
    }
}

/// A principal as stored (under its token's hash).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Principal {
    /// Normalised name (see [`normalize_name`]): the identity in the log.
    pub name: String,
    pub roles: Vec<PrincipalRole>,
}

impl Principal {
    /// Whether the principal holds `role` (admin holds every role).
    pub fn has(&self, role: PrincipalRole) -> bool {
        self.roles.iter().any(|r| *r == role || *r == PrincipalRole::Admin)
    }
}

/// The token of an `Authorization: Bearer <token>` value (the scheme in any
/// case), as HTTP callers and NATS submitters send it.
pub fn bearer_token(value: &str) -> Option<&str> {
    let v = value.trim();
    v.get(..7).filter(|p| p.eq_ignore_ascii_case("bearer ")).map(|_| v[7..].trim())
}

/// A principal's name as an identity: trimmed, lower-case, and only letters,
/// digits and `._-@`. "Bob", "bob " and "bob" are one principal; anything else
/// is refused rather than silently changed.
pub fn normalize_name(name: &str) -> Result<String, String> {
    let n = name.trim().to_lowercase();
    if n.is_empty() || n.len() > 64 {
        return Err(format!("principal name {name:?} must be 1 to 64 characters"));
    }
    if !n.chars().all(|c| c.is_ascii_alphanumeric() || "._-@".contains(c)) {
        return Err(format!("principal name {name:?} may hold only letters, digits and ._-@"));
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_normalise_to_one_identity_and_roles_nest_under_admin() {
        for spelling in ["bob", "Bob", "bob ", " BOB"] {
            assert_eq!(normalize_name(spelling).as_deref(), Ok("bob"));
        }
        assert!(normalize_name("bob smith").is_err());
        assert!(normalize_name("").is_err());
        let admin = Principal { name: "root".into(), roles: vec![PrincipalRole::Admin] };
        assert!(PrincipalRole::ALL.iter().all(|r| admin.has(*r)));
        let reader = Principal { name: "r".into(), roles: vec![PrincipalRole::Read] };
        assert!(reader.has(PrincipalRole::Read) && !reader.has(PrincipalRole::Approve));
        assert_eq!(PrincipalRole::parse(" Approve"), Some(PrincipalRole::Approve));
        assert_eq!(bearer_token("BEARER abc "), Some("abc"));
        assert_eq!(bearer_token("Basic abc"), None);
    }
}
