//! Who may do what on SKYNET's NATS: the roles in `nats/roles.json`, one
//! credential (an nkey) per role, the server configuration that enforces them,
//! and connecting under a role.
//!
//! The broker is the first line of defence: a client holding the `client`
//! credential cannot publish `skynet.job.<id>.approved`, delete a stream or
//! steer the executors' consumer, because the server refuses it. Consumers check
//! the CloudEvent `source` again ([`skynet_contract::owners`]) in case an
//! operator's server grants more than these roles do.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tracing::warn;

/// `nats/roles.json`, compiled in.
pub const ROLES_JSON: &str = include_str!("../../../nats/roles.json");

/// The role with every right; used only to create streams and consumers.
pub const ADMIN: &str = "admin";
/// The role of users' NATS clients and the CLI.
pub const CLIENT: &str = "client";

/// The account that holds the streams and SKYNET's services.
pub const SKYNET_ACCOUNT: &str = "SKYNET";

/// Every role, by name, and the accounts they live in.
#[derive(Debug, Clone, Deserialize)]
pub struct Roles {
    /// Account name → its configuration in nats-server's terms (`jetstream`,
    /// `exports`, `imports`); the users are added from the roles.
    pub accounts: BTreeMap<String, serde_json::Map<String, serde_json::Value>>,
    pub roles: BTreeMap<String, Role>,
}

/// One role: what it is for, its account, and its permissions in nats-server's
/// own terms.
#[derive(Debug, Clone, Deserialize)]
pub struct Role {
    pub description: String,
    pub account: String,
    pub permissions: Permissions,
}

/// A `permissions` block of nats-server's configuration.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Permissions {
    #[serde(default)]
    pub publish: Rule,
    #[serde(default)]
    pub subscribe: Rule,
    /// The role may answer requests it received (reply subjects only).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub allow_responses: bool,
}

/// Allow and deny lists of subjects (NATS wildcards `*` and `>`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    #[serde(default)]
    pub allow: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub deny: Vec<String>,
}

impl Rule {
    /// Whether the server lets `subject` through: some allow matches and no deny.
    pub fn permits(&self, subject: &str) -> bool {
        self.allow.iter().any(|p| subject_matches(p, subject)) && !self.deny.iter().any(|p| subject_matches(p, subject))
    }
}

impl Permissions {
    pub fn may_publish(&self, subject: &str) -> bool {
        self.publish.permits(subject)
    }

    pub fn may_subscribe(&self, subject: &str) -> bool {
        self.subscribe.permits(subject)
    }
}

/// Whether NATS subject `pattern` (with `*` for one token, `>` for the rest)
/// matches the literal `subject`.
pub fn subject_matches(pattern: &str, subject: &str) -> bool {
    let mut p = pattern.split('.');
    let mut s = subject.split('.');
    loop {
        match (p.next(), s.next()) {
            (Some(">"), Some(_)) => return true,
            (Some("*"), Some(_)) => {}
            (Some(a), Some(b)) if a == b => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

/// Why the roles or credentials could not be used.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("nats/roles.json is not valid")]
    Roles(#[source] serde_json::Error),
    #[error("no role {0:?} in nats/roles.json")]
    UnknownRole(String),
    #[error("credential file {path}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("credential file {path} holds no valid nkey seed")]
    BadSeed { path: PathBuf },
}

impl Roles {
    /// The compiled-in roles.
    pub fn builtin() -> Result<Roles, AuthError> {
        serde_json::from_str(ROLES_JSON).map_err(AuthError::Roles)
    }

    pub fn get(&self, role: &str) -> Result<&Role, AuthError> {
        self.roles.get(role).ok_or_else(|| AuthError::UnknownRole(role.to_owned()))
    }

    /// The `accounts` block of a nats-server configuration: each account with
    /// its exports or imports, and each role's public key with its permissions
    /// in its account. JSON is valid server configuration.
    pub fn render_accounts(&self, creds: &Credentials) -> Result<String, AuthError> {
        let mut accounts = self.accounts.clone();
        for (name, role) in &self.roles {
            let account =
                accounts.get_mut(&role.account).ok_or_else(|| AuthError::UnknownRole(role.account.clone()))?;
            let user = serde_json::json!({ "nkey": creds.public_key(name)?, "permissions": role.permissions });
            match account.entry("users").or_insert_with(|| serde_json::json!([])) {
                serde_json::Value::Array(users) => users.push(user),
                other => *other = serde_json::json!([user]),
            }
        }
        Ok(format!(
            "# Generated by SKYNET from nats/roles.json: one nkey per role, in two accounts.\naccounts: {}\n",
            serde_json::to_string_pretty(&accounts).unwrap_or_default()
        ))
    }
}

/// The inbox prefix of `role`: replies to its requests arrive only there, and
/// no other role may subscribe to it.
pub fn inbox_prefix(role: &str) -> String {
    format!("_INBOX_{role}")
}

/// A directory of nkey seeds, one file `<role>.nk` per role (mode 0600, the
/// directory 0700).
#[derive(Debug, Clone)]
pub struct Credentials {
    pub dir: PathBuf,
}

impl Credentials {
    /// Opens `dir`, creating it and a seed for every role that has none yet;
    /// existing seeds are kept, so a restart reuses them.
    pub fn ensure(dir: &Path, roles: &Roles) -> Result<Credentials, AuthError> {
        use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
        let io = |source| AuthError::Io { path: dir.to_owned(), source };
        std::fs::create_dir_all(dir).map_err(io)?;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(io)?;
        let creds = Credentials { dir: dir.to_owned() };
        for name in roles.roles.keys() {
            let path = creds.path(name);
            if path.exists() {
                creds.seed(name)?;
                continue;
            }
            let seed = nkeys::KeyPair::new_user().seed().map_err(|_| AuthError::BadSeed { path: path.clone() })?;
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&path)
                .map_err(|source| AuthError::Io { path: path.clone(), source })?;
            std::io::Write::write_all(&mut f, seed.as_bytes()).map_err(|source| AuthError::Io { path, source })?;
        }
        Ok(creds)
    }

    /// The file holding `role`'s seed.
    pub fn path(&self, role: &str) -> PathBuf {
        self.dir.join(format!("{role}.nk"))
    }

    /// `role`'s credential.
    pub fn credential(&self, role: &str) -> Credential {
        Credential::SeedFile(self.path(role))
    }

    fn seed(&self, role: &str) -> Result<nkeys::KeyPair, AuthError> {
        read_seed(&self.path(role))
    }

    /// `role`'s public key (what the server configuration holds).
    pub fn public_key(&self, role: &str) -> Result<String, AuthError> {
        Ok(self.seed(role)?.public_key())
    }
}

fn read_seed(path: &Path) -> Result<nkeys::KeyPair, AuthError> {
    let text = std::fs::read_to_string(path).map_err(|source| AuthError::Io { path: path.to_owned(), source })?;
    nkeys::KeyPair::from_seed(text.trim()).map_err(|_| AuthError::BadSeed { path: path.to_owned() })
}

/// How one connection authenticates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credential {
    /// No credential (a server without authorization, or user and password in the URL).
    None,
    /// A file with an nkey seed (`S...`), as `skynet up` generates.
    SeedFile(PathBuf),
    /// A `.creds` file (JWT and seed), as an operator's account server issues.
    CredsFile(PathBuf),
}

impl Credential {
    /// A credential file of either kind, by its content.
    pub fn from_file(path: &Path) -> Credential {
        let is_creds = std::fs::read_to_string(path).is_ok_and(|t| t.contains("BEGIN NATS USER JWT"));
        if is_creds { Credential::CredsFile(path.to_owned()) } else { Credential::SeedFile(path.to_owned()) }
    }
}

/// Connects to `url` as `role` with `credential`: the role's private inbox
/// prefix, and permission violations the server reports logged as warnings
/// (a refused publish is otherwise silent).
pub async fn connect(
    url: &str,
    credential: &Credential,
    role: &str,
    name: &str,
) -> Result<async_nats::Client, ConnectError> {
    let mut options = async_nats::ConnectOptions::new();
    match credential {
        Credential::None => {}
        Credential::SeedFile(path) => {
            options = options.nkey(read_seed(path).map_err(ConnectError::Credential)?.seed().unwrap_or_default());
        }
        Credential::CredsFile(path) => {
            options = options
                .credentials_file(path)
                .await
                .map_err(|source| ConnectError::Credential(AuthError::Io { path: path.clone(), source }))?;
        }
    }
    let who = format!("{name} ({role})");
    options
        .name(name)
        .custom_inbox_prefix(inbox_prefix(role))
        .event_callback(move |event| {
            let who = who.clone();
            async move {
                if let async_nats::Event::ServerError(e) = event {
                    warn!(connection = %who, error = %e, "NATS server refused an operation");
                }
            }
        })
        .connect(servers(url, role)?)
        .await
        .map_err(|source| ConnectError::Nats { url: url.to_owned(), role: role.to_owned(), source })
}

/// The servers of a URL that may list several, comma-separated (the nodes of a
/// cluster: the client fails over between them).
fn servers(url: &str, role: &str) -> Result<Vec<async_nats::ServerAddr>, ConnectError> {
    url.split(',').map(|u| u.trim().parse::<async_nats::ServerAddr>()).collect::<Result<_, _>>().map_err(|e| {
        ConnectError::Nats {
            url: url.to_owned(),
            role: role.to_owned(),
            source: async_nats::ConnectError::with_source(async_nats::ConnectErrorKind::ServerParse, e),
        }
    })
}

impl ConnectError {
    /// Whether the server could not be reached (worth waiting for), as opposed
    /// to refusing us (a bad credential, which waiting does not mend).
    pub fn is_unreachable(&self) -> bool {
        match self {
            ConnectError::Credential(_) => false,
            ConnectError::Nats { source, .. } => matches!(
                source.kind(),
                async_nats::ConnectErrorKind::Io
                    | async_nats::ConnectErrorKind::TimedOut
                    | async_nats::ConnectErrorKind::Dns
            ),
        }
    }
}

/// Why connecting failed.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("loading the NATS credential")]
    Credential(#[source] AuthError),
    #[error("connecting to NATS at {url} as {role}")]
    Nats {
        url: String,
        role: String,
        #[source]
        source: async_nats::ConnectError,
    },
}

#[cfg(test)]
mod tests;
