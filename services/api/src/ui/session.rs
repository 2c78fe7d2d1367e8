//! Dashboard sessions: a principal's API token exchanged for an opaque,
//! HTTP-only, SameSite=Strict cookie, with a per-session CSRF token every form
//! carries. The token stays on the server (the cookie names a session, not a
//! credential) and is verified again on every request, so revoking it ends
//! every session made from it. Sessions live in this API process: a restart,
//! or another replica, asks to sign in again.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::http::{HeaderMap, HeaderValue, header};

/// The session cookie.
pub const SESSION_COOKIE: &str = "skynet_session";
/// The sign-in form's CSRF cookie (there is no session yet to hold it).
pub const LOGIN_COOKIE: &str = "skynet_login";
/// How long a session lasts, however active.
pub const SESSION_TTL: Duration = Duration::from_secs(12 * 3600);
/// Sessions one principal holds at most; its oldest goes first (so one token
/// signing in over and over pushes out only its own sessions).
const PER_PRINCIPAL: usize = 16;

/// One signed-in browser.
#[derive(Clone)]
pub struct Session {
    /// The API token it signed in with (forwarded in commands).
    pub token: String,
    /// Whose it is.
    pub principal: String,
    /// What every form of this session must carry back.
    pub csrf: String,
    expires: Instant,
    /// A message for the next page (the outcome of an action).
    flash: Option<String>,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session").field("expires", &self.expires).finish_non_exhaustive()
    }
}

/// The sessions of this process.
#[derive(Debug, Default)]
pub struct Sessions {
    map: Mutex<HashMap<String, Session>>,
}

impl Sessions {
    /// A new session of `principal` signed in with `token`; returns its id
    /// (the cookie's value).
    pub fn create(&self, token: String, principal: &str) -> String {
        let id = random_token();
        let now = Instant::now();
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        map.retain(|_, s| s.expires > now);
        let mut own: Vec<(Instant, String)> =
            map.iter().filter(|(_, s)| s.principal == principal).map(|(k, s)| (s.expires, k.clone())).collect();
        own.sort();
        for (_, old) in own.iter().take((own.len() + 1).saturating_sub(PER_PRINCIPAL)) {
            map.remove(old);
        }
        let session = Session {
            token,
            principal: principal.to_owned(),
            csrf: random_token(),
            expires: now + SESSION_TTL,
            flash: None,
        };
        map.insert(id.clone(), session);
        id
    }

    /// The live session `id`, if any.
    pub fn get(&self, id: &str) -> Option<Session> {
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        match map.get(id) {
            Some(s) if s.expires > Instant::now() => Some(s.clone()),
            Some(_) => {
                map.remove(id);
                None
            }
            None => None,
        }
    }

    pub fn remove(&self, id: &str) {
        self.map.lock().unwrap_or_else(|p| p.into_inner()).remove(id);
    }

    /// Leaves a message for the session's next page.
    pub fn flash(&self, id: &str, message: String) {
        if let Some(s) = self.map.lock().unwrap_or_else(|p| p.into_inner()).get_mut(id) {
            s.flash = Some(message);
        }
    }

    /// Takes the message left for this page.
    pub fn take_flash(&self, id: &str) -> Option<String> {
        self.map.lock().unwrap_or_else(|p| p.into_inner()).get_mut(id).and_then(|s| s.flash.take())
    }
}

/// 244 random bits (two v4 UUIDs, from the OS's generator), hex.
pub fn random_token() -> String {
    format!("{}{}", uuid::Uuid::new_v4().simple(), uuid::Uuid::new_v4().simple())
}

/// The value of cookie `name` in the request.
pub fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_owned())
        .filter(|v| !v.is_empty())
}

/// A `Set-Cookie` value: HTTP-only and SameSite=Strict always, `Secure` when
/// the request came over HTTPS (directly or through a proxy saying so).
/// `max_age` 0 deletes the cookie.
pub fn set_cookie(name: &str, value: &str, path: &str, max_age: Duration, https: bool) -> HeaderValue {
    let secure = if https { "; Secure" } else { "" };
    let text = format!("{name}={value}; Path={path}; Max-Age={}; HttpOnly; SameSite=Strict{secure}", max_age.as_secs());
    HeaderValue::from_str(&text).unwrap_or_else(|_| HeaderValue::from_static("invalid=; Max-Age=0"))
}

/// Whether the request came over HTTPS.
pub fn https(headers: &HeaderMap) -> bool {
    headers.get("x-forwarded-proto").and_then(|v| v.to_str().ok()).is_some_and(|p| p.eq_ignore_ascii_case("https"))
}

/// Compares secrets in time independent of where they differ.
pub fn same_secret(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.bytes().zip(b.bytes()).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookies_are_found_by_exact_name() {
        let mut h = HeaderMap::new();
        h.insert(header::COOKIE, HeaderValue::from_static("skynet_sessionx=evil; skynet_session=abc; other=1"));
        assert_eq!(cookie(&h, SESSION_COOKIE).as_deref(), Some("abc"));
        assert_eq!(cookie(&h, LOGIN_COOKIE), None);
    }

    #[test]
    fn sessions_expire_and_carry_one_flash() {
        let s = Sessions::default();
        let id = s.create("tok".into(), "alice");
        assert_eq!(s.get(&id).map(|x| x.token), Some("tok".into()));
        s.flash(&id, "done".into());
        assert_eq!(s.take_flash(&id).as_deref(), Some("done"));
        assert_eq!(s.take_flash(&id), None);
        s.remove(&id);
        assert!(s.get(&id).is_none());
        assert!(s.get("made-up").is_none());
    }

    #[test]
    fn one_principal_signing_in_again_and_again_pushes_out_only_its_own() {
        let s = Sessions::default();
        let bob = s.create("b".into(), "bob");
        let first = s.create("a".into(), "alice");
        for _ in 0..PER_PRINCIPAL {
            s.create("a".into(), "alice");
        }
        assert!(s.get(&first).is_none(), "alice's oldest went");
        assert!(s.get(&bob).is_some(), "bob's stayed");
    }

    #[test]
    fn secrets_compare_whole() {
        assert!(same_secret("abc", "abc"));
        assert!(!same_secret("abc", "abd"));
        assert!(!same_secret("abc", "ab"));
        assert!(!same_secret("", "a"));
    }

    #[test]
    fn cookies_are_strict_and_http_only() {
        let c = set_cookie(SESSION_COOKIE, "v", "/", SESSION_TTL, true);
        let c = c.to_str().unwrap_or_default();
        assert!(c.contains("HttpOnly") && c.contains("SameSite=Strict") && c.contains("Secure"), "{c}");
    }
}
