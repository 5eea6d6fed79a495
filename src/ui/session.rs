//! Console sessions and CSRF tokens: signed cookies, no server-side session table.
//!
//! A session is `v1.<expires unix s>.<nonce hex>.<a|g>.<HMAC-SHA256 base64url>`: who it is for
//! (`a` logged in, `g` a guest who may only see the login page) and until when, signed with a
//! key the server derives. With `server.auth_token` set the key comes from the token, so
//! sessions outlive a restart and rotating the token (by reload) ends every session at once;
//! without a token it is random per process. A form's CSRF token is the HMAC of the session's
//! nonce under the same key: it cannot be guessed from outside the page, and it dies with the
//! session. Everything here is pure and unit tested; the HTTP side is in [`super`].

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

/// The cookie's name.
pub const COOKIE: &str = "alertd_session";
/// How long a login lasts; the cookie's `Max-Age`.
pub const LIFETIME_S: i64 = 12 * 3600;

type HmacSha256 = Hmac<Sha256>;

/// The key sessions and CSRF tokens are signed with.
#[derive(Clone)]
pub struct SessionKey([u8; 32]);

impl SessionKey {
    /// The key for the running config: derived from `auth_token` when one is set (sessions
    /// survive restarts and end when the token changes), else `process_secret`.
    pub fn derive(auth_token: &str, process_secret: &[u8; 32]) -> SessionKey {
        if auth_token.is_empty() {
            return SessionKey(*process_secret);
        }
        let mut mac = HmacSha256::new_from_slice(auth_token.as_bytes())
            .expect("HMAC takes a key of any length");
        mac.update(b"alertd console session key v1");
        SessionKey(mac.finalize().into_bytes().into())
    }

    fn mac(&self, parts: &[&[u8]]) -> [u8; 32] {
        let mut mac = HmacSha256::new_from_slice(&self.0).expect("HMAC takes a key of any length");
        for p in parts {
            mac.update(p);
            mac.update(b"\0");
        }
        mac.finalize().into_bytes().into()
    }
}

/// A verified session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    /// Random per session: CSRF tokens are bound to it.
    pub nonce: String,
    pub expires_s: i64,
    /// Logged in (or no token is configured); a guest may only use the login form.
    pub authed: bool,
}

impl Session {
    /// A new session expiring [`LIFETIME_S`] after `now_s`, with a fresh random nonce.
    pub fn new(authed: bool, now_s: i64) -> Session {
        let nonce: [u8; 16] = rand::random();
        Session {
            nonce: nonce.iter().map(|b| format!("{b:02x}")).collect(),
            expires_s: now_s + LIFETIME_S,
            authed,
        }
    }

    fn payload(&self) -> String {
        let who = if self.authed { "a" } else { "g" };
        format!("v1.{}.{}.{who}", self.expires_s, self.nonce)
    }

    /// The cookie value.
    pub fn encode(&self, key: &SessionKey) -> String {
        let payload = self.payload();
        let mac = key.mac(&[b"session", payload.as_bytes()]);
        format!("{payload}.{}", URL_SAFE_NO_PAD.encode(mac))
    }

    /// Reads a cookie value: `None` unless it is well formed, signed with `key` and unexpired
    /// at `now_s`.
    pub fn decode(value: &str, key: &SessionKey, now_s: i64) -> Option<Session> {
        let (payload, mac) = value.rsplit_once('.')?;
        let given = URL_SAFE_NO_PAD.decode(mac).ok()?;
        let want = key.mac(&[b"session", payload.as_bytes()]);
        if !bool::from(given.as_slice().ct_eq(&want)) {
            return None;
        }
        let mut parts = payload.split('.');
        let (Some("v1"), Some(expires), Some(nonce), Some(who), None) = (
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
        ) else {
            return None;
        };
        let expires_s: i64 = expires.parse().ok()?;
        if expires_s <= now_s || nonce.len() != 32 {
            return None;
        }
        Some(Session {
            nonce: nonce.to_string(),
            expires_s,
            authed: who == "a",
        })
    }

    /// The CSRF token every form of this session carries.
    pub fn csrf(&self, key: &SessionKey) -> String {
        URL_SAFE_NO_PAD.encode(key.mac(&[b"csrf", self.nonce.as_bytes()]))
    }

    /// Whether `token` is this session's CSRF token (constant time).
    pub fn csrf_ok(&self, key: &SessionKey, token: &str) -> bool {
        bool::from(token.as_bytes().ct_eq(self.csrf(key).as_bytes()))
    }

    /// The `Set-Cookie` value: HttpOnly (no script reads it), SameSite=Strict (no other site
    /// sends it), scoped to the console, expiring with the session.
    pub fn set_cookie(&self, key: &SessionKey, now_s: i64) -> String {
        format!(
            "{COOKIE}={}; Path=/ui; HttpOnly; SameSite=Strict; Max-Age={}",
            self.encode(key),
            (self.expires_s - now_s).max(0)
        )
    }
}

/// The `Set-Cookie` value that ends a session.
pub fn clear_cookie() -> String {
    format!("{COOKIE}=; Path=/ui; HttpOnly; SameSite=Strict; Max-Age=0")
}

/// The session cookie's value in a `Cookie` header, if present.
pub fn cookie_value(header: &str) -> Option<&str> {
    header.split(';').find_map(|c| {
        let (name, value) = c.trim().split_once('=')?;
        (name == COOKIE).then_some(value)
    })
}

/// Whether `given` is the configured `auth_token` (constant time; an empty token never matches).
pub fn token_ok(given: &str, auth_token: &str) -> bool {
    !auth_token.is_empty() && bool::from(given.as_bytes().ct_eq(auth_token.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_795_168_800;

    fn key() -> SessionKey {
        SessionKey::derive("s3cret-token", &[7; 32])
    }

    #[test]
    fn a_session_round_trips_through_its_cookie() {
        let s = Session::new(true, NOW);
        let back = Session::decode(&s.encode(&key()), &key(), NOW + 60).expect("valid");
        assert_eq!(back, s);
        let guest = Session::new(false, NOW);
        assert!(
            !Session::decode(&guest.encode(&key()), &key(), NOW)
                .unwrap()
                .authed
        );
    }

    #[test]
    fn a_tampered_cookie_is_refused() {
        let s = Session::new(false, NOW);
        let cookie = s.encode(&key());
        // Promote a guest to logged in without the key.
        let forged = cookie.replacen(".g.", ".a.", 1);
        assert_ne!(forged, cookie);
        assert_eq!(Session::decode(&forged, &key(), NOW), None);
        // Extend the expiry.
        let later = cookie.replacen(
            &s.expires_s.to_string(),
            &(s.expires_s + 999).to_string(),
            1,
        );
        assert_eq!(Session::decode(&later, &key(), NOW), None);
        for junk in ["", ".", "v1", "v1.1.2.a.", "a.b.c.d.e.f", "v1.x.y.a.AAAA"] {
            assert_eq!(Session::decode(junk, &key(), NOW), None, "{junk:?}");
        }
    }

    #[test]
    fn a_session_expires() {
        let s = Session::new(true, NOW);
        let cookie = s.encode(&key());
        assert!(Session::decode(&cookie, &key(), NOW + LIFETIME_S - 1).is_some());
        assert_eq!(Session::decode(&cookie, &key(), NOW + LIFETIME_S), None);
    }

    #[test]
    fn a_new_token_ends_every_session() {
        let s = Session::new(true, NOW);
        let other = SessionKey::derive("rotated-token", &[7; 32]);
        assert_eq!(Session::decode(&s.encode(&key()), &other, NOW), None);
        // Without a token the per-process secret signs: a restart ends guest sessions.
        let a = SessionKey::derive("", &[1; 32]);
        let b = SessionKey::derive("", &[2; 32]);
        assert_eq!(Session::decode(&s.encode(&a), &b, NOW), None);
    }

    #[test]
    fn csrf_tokens_are_bound_to_the_session_and_key() {
        let s = Session::new(true, NOW);
        let t = s.csrf(&key());
        assert!(s.csrf_ok(&key(), &t));
        assert!(!s.csrf_ok(&key(), ""));
        assert!(!s.csrf_ok(&key(), &t[1..]));
        assert!(
            !Session::new(true, NOW).csrf_ok(&key(), &t),
            "another session"
        );
        let other = SessionKey::derive("rotated-token", &[7; 32]);
        assert!(!s.csrf_ok(&other, &t), "another key");
    }

    #[test]
    fn the_cookie_is_http_only_strict_and_expiring() {
        let s = Session::new(true, NOW);
        let c = s.set_cookie(&key(), NOW);
        assert!(c.starts_with("alertd_session="), "{c}");
        for attr in ["HttpOnly", "SameSite=Strict", "Path=/ui", "Max-Age=43200"] {
            assert!(c.contains(attr), "{attr} missing: {c}");
        }
        assert!(clear_cookie().contains("Max-Age=0"));
    }

    #[test]
    fn reads_the_cookie_among_others() {
        assert_eq!(cookie_value("a=1; alertd_session=xyz; b=2"), Some("xyz"));
        assert_eq!(cookie_value("alertd_sessionx=1"), None);
        assert_eq!(cookie_value(""), None);
    }

    #[test]
    fn the_token_check_refuses_empty_and_wrong_tokens() {
        assert!(token_ok("abc", "abc"));
        assert!(!token_ok("abd", "abc"));
        assert!(!token_ok("", ""), "no token configured: nothing logs in");
        assert!(!token_ok("ab", "abc"));
    }
}
