//! `skynet principal add|list|remove`: the people and programs that hold API
//! tokens, and their roles. Tokens are shown once and stored only as a hash;
//! managing them needs the NATS admin credential.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Subcommand};
use skynet_bus::auth::{self, Credential};
use skynet_bus::principals::{Principals, new_token};
use skynet_contract::principal::{Principal, PrincipalRole, normalize_name};

/// `skynet principal`.
#[derive(Debug, Args)]
pub struct PrincipalArgs {
    #[command(subcommand)]
    pub cmd: PrincipalCmd,
    /// NATS of the running system.
    #[arg(long, env = "SKYNET_NATS_URL", default_value = "nats://127.0.0.1:4333")]
    pub nats_url: String,
    /// The NATS admin credential (nkey seed or `.creds`). Default:
    /// `<data-dir>/nats-creds/admin.nk`, as `skynet up` generates it.
    #[arg(long, env = "SKYNET_NATS_ADMIN_CREDS")]
    pub admin_creds: Option<PathBuf>,
    #[arg(long, env = "SKYNET_DATA_DIR", default_value = ".data")]
    pub data_dir: PathBuf,
    /// Machine-readable JSON output.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum PrincipalCmd {
    /// Add a principal (or a further token of one); prints the token once.
    Add {
        name: String,
        /// Any of submit, approve, read, admin.
        #[arg(long, value_delimiter = ',', default_value = "submit,read")]
        roles: Vec<String>,
        /// The principal exists: remove its tokens first (new roles, new token).
        #[arg(long)]
        replace: bool,
    },
    /// Every principal and its roles (tokens are not stored, only their hashes).
    List,
    /// Remove every token of a principal.
    Remove { name: String },
}

pub async fn run(args: PrincipalArgs) -> anyhow::Result<i32> {
    let credential = match &args.admin_creds {
        Some(file) => Credential::from_file(file),
        None => Credential::SeedFile(args.data_dir.join("nats-creds").join(format!("{}.nk", auth::ADMIN))),
    };
    let admin = auth::connect(&args.nats_url, &credential, auth::ADMIN, "skynet-principal")
        .await
        .context("managing principals needs the NATS admin credential (--admin-creds)")?;
    let store = Principals::open(&async_nats::jetstream::new(admin)).await?;
    match args.cmd {
        PrincipalCmd::Add { name, roles, replace } => {
            let name = normalize_name(&name).map_err(|e| anyhow::anyhow!(e))?;
            // A second token with other roles would leave the first working.
            if store.list().await?.iter().any(|(_, p)| p.name == name) {
                anyhow::ensure!(replace, "principal {name} exists; --replace removes its tokens and adds a new one");
                store.remove(&name).await?;
            }
            let roles = roles
                .iter()
                .map(|r| {
                    PrincipalRole::parse(r)
                        .ok_or_else(|| anyhow::anyhow!("unknown role {r:?}: submit, approve, read, admin"))
                })
                .collect::<anyhow::Result<Vec<_>>>()?;
            let token = new_token();
            store.put(&token, &Principal { name: name.clone(), roles: roles.clone() }).await?;
            if args.json {
                super::emit(serde_json::json!({"name": name, "roles": roles, "token": token}));
            } else {
                super::emit(format!("principal {name} ({}); its token, shown once:", roles_text(&roles)));
                super::emit(token);
            }
        }
        PrincipalCmd::List => {
            let all = store.list().await?;
            if args.json {
                let rows: Vec<_> =
                    all.iter().map(|(_, p)| serde_json::json!({"name": p.name, "roles": p.roles})).collect();
                super::emit(serde_json::Value::from(rows));
            } else {
                for (_, p) in all {
                    super::emit(format!("{:<24} {}", p.name, roles_text(&p.roles)));
                }
            }
        }
        PrincipalCmd::Remove { name } => {
            let name = normalize_name(&name).map_err(|e| anyhow::anyhow!(e))?;
            let n = store.remove(&name).await?;
            if n == 0 {
                anyhow::bail!("no principal {name}");
            }
            super::emit(format!("removed {n} token(s) of {name}"));
        }
    }
    Ok(0)
}

fn roles_text(roles: &[PrincipalRole]) -> String {
    roles.iter().map(|r| r.as_str()).collect::<Vec<_>>().join(",")
}
