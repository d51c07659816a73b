//! The demo's optional access check (`--auth-token`): one shared token,
//! compared in constant time; whoever has it may do everything.

use fanfare_client::hub::{AuthRequest, Authorizer, Denied, Identity};

/// Allows a browser that presents the one shared token.
pub struct SharedToken {
    token: String,
}

impl SharedToken {
    /// The authorizer for `token`.
    pub fn new(token: &str) -> Self {
        Self {
            token: token.to_owned(),
        }
    }
}

impl Authorizer for SharedToken {
    fn authorize(&self, request: &AuthRequest<'_>) -> Result<Identity, Denied> {
        match request.token {
            Some(t) if constant_time_eq(t.as_bytes(), self.token.as_bytes()) => {
                Ok(Identity::anyone("token"))
            }
            Some(_) => Err(Denied("wrong token".to_owned())),
            None => Err(Denied("a token is required".to_owned())),
        }
    }
}

/// Equal bytes, in a time that depends only on the lengths.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_shared_token_passes() {
        let a = SharedToken::new("s3cret");
        let headers = axum::http::HeaderMap::new();
        let ask = |token| {
            a.authorize(&AuthRequest {
                headers: &headers,
                token,
            })
        };
        assert!(ask(Some("s3cret")).is_ok());
        assert!(ask(Some("s3cre")).is_err());
        assert!(ask(Some("s3creT")).is_err());
        assert!(ask(None).is_err());
    }
}
