//! Sessions, held in memory: a random 256-bit id in the browser's cookie, the API key only here.
//! A session ends at sign-out or its expiry. Past `max_sessions_per_key` the key's own session
//! closest to its end is dropped; past `max_sessions`, that of the key holding the most sessions:
//! a key signing in again and again ends its own sessions, not other tenants'. Ids and keys are
//! never logged (the types' `Debug` hides them).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::HeaderMap;
use axum::http::request::Parts;
use rand::RngCore;
use secrecy::SecretString;

use super::guard::{Bucket, Peer, client_ip};
use super::i18n::Lang;
use super::{App, ConsoleError};

/// The session cookie's name (with `__Host-` before it where cookies are `Secure`: `App::cookie`).
pub const COOKIE: &str = "pc_session";
/// The cookie of the sign-in form's CSRF token (before there is a session).
pub const SIGNIN_COOKIE: &str = "pc_signin";
/// The language cookie.
pub const LANG_COOKIE: &str = "pc_lang";

/// A signed-in session.
pub struct Session {
    /// The tenant's API key, sent as `authorization` metadata with every call.
    pub key: SecretString,
    /// Whose it is: the key's SHA-256 (sessions are counted per key).
    owner: [u8; 32],
    /// The token every state change of this session must carry.
    pub csrf: String,
    expires: Instant,
    bucket: Bucket,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session").finish_non_exhaustive()
    }
}

/// The sessions of this process.
pub struct Sessions {
    ttl: Duration,
    max: usize,
    max_per_key: usize,
    by_id: Mutex<HashMap<String, Arc<Mutex<Session>>>>,
}

/// A fresh random token: 32 bytes, hex.
pub fn token() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    hex::encode(bytes)
}

impl Sessions {
    /// Sessions that last `ttl`, at most `max` at once and `max_per_key` of one key.
    pub fn new(ttl: Duration, max: usize, max_per_key: usize) -> Sessions {
        Sessions {
            ttl,
            max,
            max_per_key,
            by_id: Mutex::new(HashMap::new()),
        }
    }

    /// How long a session lasts.
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// Opens a session for `key` with a burst of `capacity` requests; returns its id.
    pub fn open(&self, key: SecretString, capacity: f64) -> String {
        use secrecy::ExposeSecret;
        use sha2::Digest;
        let id = token();
        let owner: [u8; 32] = sha2::Sha256::digest(key.expose_secret().as_bytes()).into();
        let session = Session {
            key,
            owner,
            csrf: token(),
            expires: Instant::now() + self.ttl,
            bucket: Bucket::full(capacity),
        };
        let mut sessions = self.by_id.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        // (expiry, id) per owner, of the live sessions; the expired ones go.
        let mut by_owner: HashMap<[u8; 32], Vec<(Instant, String)>> = HashMap::new();
        sessions.retain(|id, s| {
            let Ok(s) = s.lock() else { return false };
            let live = s.expires > now;
            if live {
                by_owner
                    .entry(s.owner)
                    .or_default()
                    .push((s.expires, id.clone()));
            }
            live
        });
        let mine = by_owner.get(&owner).map_or(0, Vec::len);
        let from = if mine >= self.max_per_key {
            Some(owner)
        } else if sessions.len() >= self.max {
            // The key holding the most; of those, the one whose session ends soonest.
            by_owner
                .iter()
                .max_by_key(|(_, held)| (held.len(), std::cmp::Reverse(held.iter().min())))
                .map(|(owner, _)| *owner)
        } else {
            None
        };
        if let Some(soonest) = from
            .and_then(|o| by_owner.get(&o))
            .and_then(|held| held.iter().min())
        {
            sessions.remove(&soonest.1);
        }
        sessions.insert(id.clone(), Arc::new(Mutex::new(session)));
        id
    }

    /// The live session of `id`; an expired one is removed.
    pub fn get(&self, id: &str) -> Option<Arc<Mutex<Session>>> {
        let mut sessions = self.by_id.lock().unwrap_or_else(|e| e.into_inner());
        let session = sessions.get(id)?.clone();
        let live = session.lock().is_ok_and(|s| s.expires > Instant::now());
        if live {
            Some(session)
        } else {
            sessions.remove(id);
            None
        }
    }

    /// Ends the session `id`.
    pub fn close(&self, id: &str) {
        self.by_id
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(id);
    }
}

/// The value of cookie `name` in the request's `Cookie` headers.
pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(axum::http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// A `Set-Cookie` value: `HttpOnly`, `SameSite=Strict`, path `/`, `Secure` when asked; a zero
/// `max_age` removes the cookie.
pub fn set_cookie(name: &str, value: &str, max_age: Duration, secure: bool) -> String {
    format!(
        "{name}={value}; Path=/; Max-Age={}; HttpOnly; SameSite=Strict{}",
        max_age.as_secs(),
        if secure { "; Secure" } else { "" }
    )
}

/// The page language: the `pc_lang` cookie, else the browser's `Accept-Language`.
pub fn lang(headers: &HeaderMap) -> Lang {
    if let Some(lang) = cookie(headers, LANG_COOKIE).and_then(Lang::from_code) {
        return lang;
    }
    Lang::from_accept_language(
        headers
            .get(axum::http::header::ACCEPT_LANGUAGE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or(""),
    )
}

/// A request of a signed-in session: extracting it refuses (sends to sign-in) without one, and
/// counts the request against the session's rate.
pub struct Signed {
    /// The session's id (from the cookie).
    pub id: String,
    /// The session's API key.
    pub key: SecretString,
    /// The session's CSRF token.
    pub csrf: String,
    /// The page language.
    pub lang: Lang,
}

impl Signed {
    /// Refuses a state change whose token is not the session's.
    pub fn check_csrf(&self, given: &str) -> Result<(), ConsoleError> {
        use subtle::ConstantTimeEq;
        if bool::from(given.as_bytes().ct_eq(self.csrf.as_bytes())) {
            Ok(())
        } else {
            Err(ConsoleError::Forbidden("missing or wrong CSRF token"))
        }
    }
}

impl FromRequestParts<Arc<App>> for Signed {
    type Rejection = ConsoleError;

    async fn from_request_parts(parts: &mut Parts, app: &Arc<App>) -> Result<Self, ConsoleError> {
        let id = cookie(&parts.headers, &app.cookie(COOKIE)).unwrap_or("");
        let Some(session) = (!id.is_empty()).then(|| app.sessions.get(id)).flatten() else {
            let ip = client_ip(parts.extensions.get::<ConnectInfo<Peer>>());
            if !app.limits.admit_address(ip) {
                return Err(ConsoleError::TooManyRequests);
            }
            return Err(ConsoleError::NotSignedIn);
        };
        let mut session = session.lock().unwrap_or_else(|e| e.into_inner());
        let (capacity, per_second) = app.limits.session;
        if !session.bucket.take(capacity, per_second) {
            return Err(ConsoleError::TooManyRequests);
        }
        Ok(Signed {
            id: id.to_owned(),
            key: session.key.clone(),
            csrf: session.csrf.clone(),
            lang: lang(&parts.headers),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sessions_expire_and_are_bounded() {
        let sessions = Sessions::new(Duration::from_secs(60), 2, 2);
        let a = sessions.open(SecretString::from("k1"), 5.0);
        let b = sessions.open(SecretString::from("k2"), 5.0);
        assert_eq!(a.len(), 64);
        assert!(sessions.get(&a).is_some());
        let c = sessions.open(SecretString::from("k3"), 5.0);
        // The one closest to its end (the first) made room.
        assert!(sessions.get(&a).is_none());
        assert!(sessions.get(&b).is_some() && sessions.get(&c).is_some());
        sessions.close(&b);
        assert!(sessions.get(&b).is_none());
        let gone = Sessions::new(Duration::ZERO, 2, 2);
        let d = gone.open(SecretString::from("k4"), 5.0);
        assert!(gone.get(&d).is_none());
    }

    #[test]
    fn a_key_signing_in_again_and_again_ends_its_own_sessions() {
        let sessions = Sessions::new(Duration::from_secs(60), 4, 2);
        let other = sessions.open(SecretString::from("other"), 5.0);
        let mine: Vec<String> = (0..3)
            .map(|_| sessions.open(SecretString::from("flood"), 5.0))
            .collect();
        // Past its own cap, the key's first session made room; the other key's is untouched.
        assert!(sessions.get(&mine[0]).is_none());
        assert!(sessions.get(&mine[1]).is_some() && sessions.get(&mine[2]).is_some());
        assert!(sessions.get(&other).is_some());
        // Full in all: the key holding the most gives way, not the oldest session overall.
        let third = sessions.open(SecretString::from("third"), 5.0);
        let fourth = sessions.open(SecretString::from("fourth"), 5.0);
        assert!(
            sessions.get(&mine[1]).is_none(),
            "the flooding key's oldest"
        );
        for kept in [&other, &mine[2], &third, &fourth] {
            assert!(sessions.get(kept).is_some());
        }
    }

    #[test]
    fn cookies_are_read_and_written() {
        let mut headers = HeaderMap::new();
        headers.insert("cookie", "a=1; pc_session=abc; pc_lang=zh".parse().unwrap());
        assert_eq!(cookie(&headers, COOKIE), Some("abc"));
        assert_eq!(lang(&headers), Lang::Zh);
        let set = set_cookie(COOKIE, "x", Duration::from_secs(5), true);
        assert_eq!(
            set,
            "pc_session=x; Path=/; Max-Age=5; HttpOnly; SameSite=Strict; Secure"
        );
    }
}
