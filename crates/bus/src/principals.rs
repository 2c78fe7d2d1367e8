//! The principal store: API tokens of named principals with roles, in the
//! `SKYNET_PRINCIPALS` key-value bucket keyed by the SHA-256 of the token.
//!
//! Services (the API, the policy service) only look up the hash of a token they
//! were given; listing, adding and removing need the admin role (`skynet
//! principal`). A lookup is cached for a few seconds, so a removed token stops
//! working within [`CACHE_TTL`].

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, kv};
use futures::StreamExt;
use sha2::{Digest, Sha256};
use skynet_contract::principal::Principal;

use crate::definitions::PRINCIPALS_BUCKET;

/// How long a lookup (found or not) is reused.
pub const CACHE_TTL: Duration = Duration::from_secs(5);
/// Lookups kept at most (the cache is cleared when full: a flood of random
/// tokens cannot grow it without bound).
const CACHE_MAX: usize = 10_000;

/// Why the principal store could not answer.
#[derive(Debug, thiserror::Error)]
#[error("principal store {bucket}: {action}")]
pub struct PrincipalsError {
    bucket: &'static str,
    action: &'static str,
    #[source]
    source: async_nats::Error,
}

fn err<E: Into<async_nats::Error>>(action: &'static str) -> impl FnOnce(E) -> PrincipalsError {
    move |e| PrincipalsError { bucket: PRINCIPALS_BUCKET, action, source: e.into() }
}

/// Handle on the principal store.
pub struct Principals {
    kv: kv::Store,
    cache: Mutex<HashMap<String, (Instant, Option<Principal>)>>,
}

/// The key a token's principal is stored under: hex SHA-256 of the token.
pub fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.trim().as_bytes()))
}

/// A new random token (256 bits), shown once to its principal.
pub fn new_token() -> String {
    format!("skp_{}{}", uuid::Uuid::new_v4().simple(), uuid::Uuid::new_v4().simple())
}

impl Principals {
    pub async fn open(js: &jetstream::Context) -> Result<Principals, PrincipalsError> {
        let kv = js.get_key_value(PRINCIPALS_BUCKET).await.map_err(err("opening"))?;
        Ok(Principals { kv, cache: Mutex::default() })
    }

    /// The principal holding `token`, if any.
    pub async fn verify(&self, token: &str) -> Result<Option<Principal>, PrincipalsError> {
        if token.trim().is_empty() {
            return Ok(None);
        }
        let key = token_hash(token);
        if let Ok(cache) = self.cache.lock()
            && let Some((at, found)) = cache.get(&key)
            && at.elapsed() < CACHE_TTL
        {
            return Ok(found.clone());
        }
        let found = match self.kv.get(&key).await.map_err(err("looking up a token"))? {
            Some(bytes) => serde_json::from_slice::<Principal>(&bytes).ok(),
            None => None,
        };
        if let Ok(mut cache) = self.cache.lock() {
            if cache.len() >= CACHE_MAX {
                cache.clear();
            }
            cache.insert(key, (Instant::now(), found.clone()));
        }
        Ok(found)
    }

    /// Stores `principal` for `token` (admin role).
    pub async fn put(&self, token: &str, principal: &Principal) -> Result<(), PrincipalsError> {
        let body = serde_json::to_vec(principal).map_err(err("encoding"))?;
        self.kv.put(token_hash(token), body.into()).await.map_err(err("storing a principal"))?;
        Ok(())
    }

    /// Every principal with its key (admin role: lists the bucket).
    pub async fn list(&self) -> Result<Vec<(String, Principal)>, PrincipalsError> {
        let mut keys = self.kv.keys().await.map_err(err("listing"))?;
        let mut out = Vec::new();
        while let Some(key) = keys.next().await {
            let key = key.map_err(err("listing"))?;
            let value = self.kv.get(&key).await.map_err(err("reading"))?;
            if let Some(p) = value.and_then(|b| serde_json::from_slice::<Principal>(&b).ok()) {
                out.push((key, p));
            }
        }
        out.sort_by(|a, b| a.1.name.cmp(&b.1.name));
        Ok(out)
    }

    /// Removes every token of `name` (admin role); returns how many.
    pub async fn remove(&self, name: &str) -> Result<usize, PrincipalsError> {
        let mut n = 0;
        for (key, p) in self.list().await? {
            if p.name == name {
                self.kv.purge(&key).await.map_err(err("removing"))?;
                n += 1;
            }
        }
        Ok(n)
    }
}
