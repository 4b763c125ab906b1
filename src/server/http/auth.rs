//! Bearer tokens: each one grants subscribing to and publishing on the channels matching its
//! globs (a courier's token: `delivery.42.*` only). With no tokens configured, HTTP is open.

use std::sync::Arc;

use axum::extract::{FromRequestParts, Query};
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use axum::http::{Method, Uri};
use serde::Deserialize;

use super::AppState;
use super::error::HttpError;
use crate::glob::glob_match;

/// A bearer token of the HTTP edge and the channels it may use.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct TokenRule {
    /// The secret clients send as `Authorization: Bearer <token>` (or `?token=` on GET
    /// requests, for browsers' `EventSource` and `WebSocket`, which cannot set headers).
    pub token: String,
    /// Redis globs of the channels it may subscribe to (SSE, WebSocket, long polling).
    #[serde(default)]
    pub subscribe: Vec<String>,
    /// Redis globs of the channels it may publish on.
    #[serde(default)]
    pub publish: Vec<String>,
}

/// What the request's token allows; `Open` when the server has no tokens.
#[derive(Debug, Clone)]
pub(crate) enum Grant {
    /// No tokens configured: everything is allowed.
    Open,
    /// The rule of the token the request presented.
    Token(Arc<TokenRule>),
}

/// Compares in time independent of where the bytes differ, so a token cannot be guessed byte
/// by byte from response times.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn has_glob(s: &str) -> bool {
    s.bytes().any(|b| matches!(b, b'*' | b'?' | b'[' | b'\\'))
}

/// Whether every channel `pattern` can match is matched by glob `allowed`. Exact only for the
/// common shapes (equal globs, a literal name, a literal prefix then `*`); anything else is
/// refused, since glob containment in general is not worth the risk of granting too much.
fn covers(allowed: &str, pattern: &str) -> bool {
    if allowed == pattern
        || (!has_glob(pattern) && glob_match(allowed.as_bytes(), pattern.as_bytes()))
    {
        return true;
    }
    match allowed.strip_suffix('*') {
        Some(prefix) if !has_glob(prefix) => pattern.starts_with(prefix),
        _ => false,
    }
}

impl Grant {
    fn rule_allows(globs: &[String], channel: &str) -> bool {
        globs
            .iter()
            .any(|g| glob_match(g.as_bytes(), channel.as_bytes()))
    }

    /// Whether the token may subscribe to `channel`.
    pub(crate) fn may_subscribe(&self, channel: &str) -> bool {
        match self {
            Self::Open => true,
            Self::Token(r) => Self::rule_allows(&r.subscribe, channel),
        }
    }

    /// Whether the token may subscribe to every channel `pattern` matches.
    pub(crate) fn may_psubscribe(&self, pattern: &str) -> bool {
        match self {
            Self::Open => true,
            Self::Token(r) => r.subscribe.iter().any(|g| covers(g, pattern)),
        }
    }

    /// Whether the token may publish on `channel`.
    pub(crate) fn may_publish(&self, channel: &str) -> bool {
        match self {
            Self::Open => true,
            Self::Token(r) => Self::rule_allows(&r.publish, channel),
        }
    }
}

#[derive(Deserialize)]
struct TokenQuery {
    token: Option<String>,
}

fn presented(parts: &Parts) -> Option<String> {
    if let Some(v) = parts.headers.get(AUTHORIZATION) {
        let v = v.to_str().ok()?;
        let (scheme, token) = v.split_once(' ')?;
        return scheme
            .eq_ignore_ascii_case("bearer")
            .then(|| token.trim().to_owned());
    }
    if parts.method == Method::GET {
        return query_token(&parts.uri);
    }
    None
}

fn query_token(uri: &Uri) -> Option<String> {
    Query::<TokenQuery>::try_from_uri(uri).ok()?.0.token
}

impl FromRequestParts<Arc<AppState>> for Grant {
    type Rejection = HttpError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<AppState>,
    ) -> Result<Self, Self::Rejection> {
        if state.tokens.is_empty() {
            return Ok(Self::Open);
        }
        let token = presented(parts).ok_or(HttpError::Unauthorized)?;
        state
            .tokens
            .iter()
            .find(|r| same(r.token.as_bytes(), token.as_bytes()))
            .map(|r| Self::Token(Arc::clone(r)))
            .ok_or(HttpError::Unauthorized)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pattern_containment_is_conservative() {
        assert!(covers("delivery.42.*", "delivery.42.*"));
        assert!(covers("delivery.42.*", "delivery.42.position"));
        assert!(covers("delivery.42.*", "delivery.42.pos*"));
        assert!(!covers("delivery.42.*", "delivery.*"));
        assert!(!covers("delivery.42.*", "delivery.4?.*"));
        assert!(covers("*", "anything*"));
        // `a?` does not cover `a*` even though the text "a*" matches `a?`.
        assert!(!covers("a?", "a*"));
    }

    #[test]
    fn tokens_compare_whole() {
        assert!(same(b"abc", b"abc"));
        assert!(!same(b"abc", b"abd"));
        assert!(!same(b"abc", b"abcd"));
    }
}
