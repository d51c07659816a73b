//! Who may connect, subscribe and publish: the [`Authorizer`] hook, the
//! permissive default and the `Origin` allowlist.

use axum::http::HeaderMap;
use fanfare_protocol::pattern::Pattern;

/// What an authorizer sees of a websocket upgrade request.
#[derive(Debug)]
pub struct AuthRequest<'a> {
    /// Request headers (including `Cookie` and `Authorization`).
    pub headers: &'a HeaderMap,
    /// The token, taken from (in order) the `token` query parameter, an
    /// `Authorization: Bearer …` header or the `fanfare_token` cookie.
    pub token: Option<&'a str>,
}

/// An authenticated browser: its name and the patterns it may use.
#[derive(Debug, Clone)]
pub struct Identity {
    /// Name used in logs.
    pub name: String,
    /// A subscribe pattern is allowed when one of these covers it.
    pub subscribe: Vec<Pattern>,
    /// A publish topic is allowed when one of these matches it.
    pub publish: Vec<Pattern>,
}

impl Identity {
    /// An identity allowed everything (`#` for both).
    pub fn anyone(name: impl Into<String>) -> Self {
        let all = Pattern::parse("#").map(|p| vec![p]).unwrap_or_default();
        Self {
            name: name.into(),
            subscribe: all.clone(),
            publish: all,
        }
    }

    /// May this identity subscribe to `pattern`?
    pub fn may_subscribe(&self, pattern: &Pattern) -> bool {
        self.subscribe.iter().any(|a| covers(a, pattern))
    }

    /// May this identity publish on `topic`?
    pub fn may_publish(&self, topic: &str) -> bool {
        self.publish.iter().any(|a| a.matches(topic))
    }
}

/// Refusal of an upgrade by the authorizer (answered with HTTP 401).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not authorized: {0}")]
pub struct Denied(pub String);

/// Decides who a connecting browser is. Called once per websocket upgrade,
/// before the connection is accepted.
pub trait Authorizer: Send + Sync + 'static {
    /// The identity of this request, or why it is refused.
    fn authorize(&self, request: &AuthRequest<'_>) -> Result<Identity, Denied>;
}

/// The demo's authorizer: everyone may subscribe to and publish on anything
/// (reserved `_fanfare.` topics stay refused by the hub itself).
#[derive(Debug, Clone, Copy, Default)]
pub struct AllowAll;

impl Authorizer for AllowAll {
    fn authorize(&self, request: &AuthRequest<'_>) -> Result<Identity, Denied> {
        Ok(Identity::anyone(request.token.unwrap_or("anonymous")))
    }
}

/// Does every topic matched by `inner` also match `outer`?
///
/// Sound, not complete: `#` in `outer` covers any run of words (wildcards
/// included), `*` covers one literal word or `*`, a literal only itself.
pub fn covers(outer: &Pattern, inner: &Pattern) -> bool {
    let o: Vec<&str> = outer.as_str().split('.').collect();
    let i: Vec<&str> = inner.as_str().split('.').collect();
    covers_words(&o, &i)
}

fn covers_words(o: &[&str], i: &[&str]) -> bool {
    match (o.first(), i.first()) {
        (None, None) => true,
        (Some(&"#"), _) => covers_words(&o[1..], i) || (!i.is_empty() && covers_words(o, &i[1..])),
        (None, Some(_)) | (Some(_), None) => false,
        (Some(_), Some(&"#")) => false,
        (Some(&"*"), Some(_)) => covers_words(&o[1..], &i[1..]),
        (Some(a), Some(b)) => a == b && covers_words(&o[1..], &i[1..]),
    }
}

/// Which page origins may open a websocket.
#[derive(Debug, Clone, Default)]
pub enum OriginPolicy {
    /// Only pages of the origin the websocket is on: the authority of
    /// `Origin` must equal the `Host` header (case-insensitive). A request
    /// without `Origin` (not a browser) is accepted.
    #[default]
    SameOrigin,
    /// Any origin, and requests without `Origin` (non-browser clients).
    /// The `fanfare_token` cookie is ignored under this policy: any site
    /// could make a browser send it (cross-site websocket hijacking).
    Any,
    /// Only these exact origins (`https://app.example.com`); a request
    /// without `Origin` is accepted (browsers always send it).
    AllowList(Vec<String>),
}

impl OriginPolicy {
    /// Is a request with these headers allowed?
    pub fn allows(&self, headers: &HeaderMap) -> bool {
        match self {
            OriginPolicy::Any => true,
            OriginPolicy::SameOrigin => match headers.get(axum::http::header::ORIGIN) {
                None => true,
                Some(origin) => {
                    let host = headers
                        .get(axum::http::header::HOST)
                        .and_then(|h| h.to_str().ok());
                    let authority = origin
                        .to_str()
                        .ok()
                        .and_then(|o| o.split_once("://"))
                        .map(|(_, a)| a);
                    matches!((authority, host), (Some(a), Some(h)) if a.eq_ignore_ascii_case(h))
                }
            },
            OriginPolicy::AllowList(list) => match headers.get(axum::http::header::ORIGIN) {
                None => true,
                Some(v) => v
                    .to_str()
                    .map(|o| list.iter().any(|a| a.eq_ignore_ascii_case(o)))
                    .unwrap_or(false),
            },
        }
    }

    /// May the `fanfare_token` cookie authenticate? Only when the page
    /// origin is checked (same origin or an allowlist).
    pub fn cookies_allowed(&self) -> bool {
        !matches!(self, OriginPolicy::Any)
    }
}

/// Finds the token of a request: `token` query parameter, bearer header or
/// (when `cookie`) the `fanfare_token` cookie.
pub fn find_token<'a>(
    query: Option<&'a str>,
    headers: &'a HeaderMap,
    cookie: bool,
) -> Option<&'a str> {
    let from_query = query.and_then(|q| {
        q.split('&')
            .find_map(|kv| kv.strip_prefix("token="))
            .filter(|t| !t.is_empty())
    });
    let from_header = || {
        headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
    };
    let from_cookie = || {
        if !cookie {
            return None;
        }
        headers
            .get_all(axum::http::header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .find_map(|c| c.trim().strip_prefix("fanfare_token="))
    };
    from_query.or_else(from_header).or_else(from_cookie)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(o: &str, i: &str) -> bool {
        covers(&Pattern::parse(o).unwrap(), &Pattern::parse(i).unwrap())
    }

    #[test]
    fn coverage() {
        assert!(c("#", "chat.#"));
        assert!(c("chat.#", "chat.*"));
        assert!(c("chat.#", "chat"));
        assert!(c("chat.*", "chat.room"));
        assert!(c("chat.*", "chat.*"));
        assert!(!c("chat.*", "chat.#"));
        assert!(!c("chat.*", "chat"));
        assert!(!c("chat.#", "#"));
        assert!(!c("metrics.#", "chat.x"));
    }

    #[test]
    fn origins_and_tokens() {
        let mut h = HeaderMap::new();
        let p = OriginPolicy::AllowList(vec!["http://ok.test".into()]);
        assert!(p.allows(&h));
        h.insert("origin", "http://evil.test".parse().unwrap());
        assert!(!p.allows(&h));
        h.insert("origin", "http://ok.test".parse().unwrap());
        assert!(p.allows(&h));
        h.insert("cookie", "a=1; fanfare_token=abc".parse().unwrap());
        assert_eq!(find_token(None, &h, true), Some("abc"));
        assert_eq!(find_token(None, &h, false), None);
        assert_eq!(find_token(Some("x=1&token=q"), &h, false), Some("q"));
        let same = OriginPolicy::SameOrigin;
        h.insert("host", "ok.test".parse().unwrap());
        assert!(same.allows(&h));
        h.insert("origin", "https://evil.test".parse().unwrap());
        assert!(!same.allows(&h));
        h.insert("origin", "null".parse().unwrap());
        assert!(!same.allows(&h));
        assert!(same.cookies_allowed() && !OriginPolicy::Any.cookies_allowed());
    }
}
