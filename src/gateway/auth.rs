//! Agent tokens (JWT HS256, algorithm pinned) and visitor tokens (signed by the gateway
//! so a returning browser is recognised as the same anonymous customer).

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};

use crate::protocol::tokens::{
    AGENT_AUDIENCE, AgentClaims, IdentityClaims, MEDIA_AUDIENCE, MediaClaims, VISITOR_AUDIENCE,
    VisitorClaims,
};

pub struct Keys {
    agent_dec: DecodingKey,
    visitor_enc: EncodingKey,
    visitor_dec: DecodingKey,
    media_dec: DecodingKey,
    /// The business's identity key and required audience; `None`: identity is off.
    identity: Option<(DecodingKey, Option<String>)>,
}

#[derive(Debug, PartialEq, Eq)]
pub enum TokenError {
    Expired,
    Invalid(String),
}

impl std::fmt::Display for TokenError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TokenError::Expired => f.write_str("the token has expired; mint a new one"),
            TokenError::Invalid(why) => write!(f, "the token is not valid: {why}"),
        }
    }
}

pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl Keys {
    pub fn new(agent_secret: &str, visitor_secret: &str, media_secret: &str) -> Keys {
        Keys {
            agent_dec: DecodingKey::from_secret(agent_secret.as_bytes()),
            visitor_enc: EncodingKey::from_secret(visitor_secret.as_bytes()),
            visitor_dec: DecodingKey::from_secret(visitor_secret.as_bytes()),
            media_dec: DecodingKey::from_secret(media_secret.as_bytes()),
            identity: None,
        }
    }

    /// Turns on customer identity tokens signed with `secret` (and carrying
    /// `audience`, when given).
    pub fn with_identity(mut self, secret: &str, audience: Option<String>) -> Keys {
        self.identity = Some((DecodingKey::from_secret(secret.as_bytes()), audience));
        self
    }

    pub fn identity_enabled(&self) -> bool {
        self.identity.is_some()
    }

    /// A customer identity token: HS256 only (`none` and every other algorithm are
    /// refused), `exp` and a usable `sub` required.
    pub fn verify_identity(&self, token: &str) -> Result<IdentityClaims, TokenError> {
        let Some((key, audience)) = &self.identity else {
            return Err(TokenError::Invalid(
                "identity tokens are not enabled on this gateway (auth.identity_secret)".into(),
            ));
        };
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_required_spec_claims(&["exp", "sub"]);
        validation.leeway = 5;
        match audience {
            Some(aud) => validation.set_audience(&[aud]),
            None => validation.validate_aud = false,
        }
        let claims = jsonwebtoken::decode::<IdentityClaims>(token, key, &validation)
            .map(|data| data.claims)
            .map_err(|e| match e.kind() {
                jsonwebtoken::errors::ErrorKind::ExpiredSignature => TokenError::Expired,
                _ => TokenError::Invalid(e.to_string()),
            })?;
        let sub = claims.sub.trim();
        if sub.is_empty() || sub.len() > 128 || sub.chars().any(char::is_control) {
            return Err(TokenError::Invalid(
                "`sub` must be 1 to 128 printable characters".into(),
            ));
        }
        if sub.starts_with("tel:") {
            return Err(TokenError::Invalid(
                "`sub` must not start with `tel:` (reserved for callers known by number)".into(),
            ));
        }
        Ok(claims)
    }

    /// A media stream token: the provider's name.
    pub fn verify_media(&self, token: &str) -> Result<String, TokenError> {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_audience(&[MEDIA_AUDIENCE]);
        validation.set_required_spec_claims(&["exp", "sub", "aud"]);
        validation.leeway = 5;
        jsonwebtoken::decode::<MediaClaims>(token, &self.media_dec, &validation)
            .map(|data| data.claims.sub)
            .map_err(|e| match e.kind() {
                jsonwebtoken::errors::ErrorKind::ExpiredSignature => TokenError::Expired,
                _ => TokenError::Invalid(e.to_string()),
            })
    }

    pub fn verify_agent(&self, token: &str) -> Result<AgentClaims, TokenError> {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_audience(&[AGENT_AUDIENCE]);
        validation.set_required_spec_claims(&["exp", "sub", "aud"]);
        validation.leeway = 5;
        jsonwebtoken::decode::<AgentClaims>(token, &self.agent_dec, &validation)
            .map(|data| data.claims)
            .map_err(|e| match e.kind() {
                jsonwebtoken::errors::ErrorKind::ExpiredSignature => TokenError::Expired,
                _ => TokenError::Invalid(e.to_string()),
            })
    }

    pub fn mint_visitor(&self, customer_id: &str) -> String {
        let claims = VisitorClaims {
            sub: customer_id.to_owned(),
            iat: unix_now(),
            aud: VISITOR_AUDIENCE.to_owned(),
        };
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.visitor_enc)
            .unwrap_or_default()
    }

    pub fn verify_visitor(&self, token: &str) -> Result<String, TokenError> {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_audience(&[VISITOR_AUDIENCE]);
        validation.set_required_spec_claims(&["sub", "aud"]);
        validation.validate_exp = false;
        jsonwebtoken::decode::<VisitorClaims>(token, &self.visitor_dec, &validation)
            .map(|data| data.claims.sub)
            .map_err(|e| TokenError::Invalid(e.to_string()))
    }
}

/// Mints an agent token valid for `ttl_secs` from now.
pub fn mint_agent(secret: &str, agent_id: &str, ttl_secs: u64) -> Result<String, String> {
    let now = unix_now();
    let claims = AgentClaims {
        sub: agent_id.to_owned(),
        exp: now + ttl_secs,
        iat: now,
        aud: AGENT_AUDIENCE.to_owned(),
    };
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .map_err(|e| e.to_string())
}

/// Mints a media stream token for a telephony provider, valid for `ttl_secs`.
pub fn mint_media(secret: &str, provider: &str, ttl_secs: u64) -> Result<String, String> {
    let now = unix_now();
    let claims = MediaClaims {
        sub: provider.to_owned(),
        exp: now + ttl_secs,
        iat: now,
        aud: MEDIA_AUDIENCE.to_owned(),
    };
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .map_err(|e| e.to_string())
}

/// A fresh random secret (256 bits, hex).
pub fn random_secret() -> String {
    use rand::RngCore;
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "0123456789abcdef0123456789abcdef";

    #[test]
    fn agent_tokens_round_trip_and_expire() {
        let keys = Keys::new(SECRET, "visitor-secret-visitor-secret-xx", SECRET);
        let token = mint_agent(SECRET, "alice", 60).unwrap();
        assert_eq!(keys.verify_agent(&token).unwrap().sub, "alice");
        let expired = {
            let claims = AgentClaims {
                sub: "alice".into(),
                exp: unix_now() - 3600,
                iat: 0,
                aud: AGENT_AUDIENCE.into(),
            };
            jsonwebtoken::encode(
                &Header::new(Algorithm::HS256),
                &claims,
                &EncodingKey::from_secret(SECRET.as_bytes()),
            )
            .unwrap()
        };
        assert_eq!(
            keys.verify_agent(&expired).unwrap_err(),
            TokenError::Expired
        );
        let forged = mint_agent("another-secret-another-secret-xx", "alice", 60).unwrap();
        assert!(matches!(
            keys.verify_agent(&forged),
            Err(TokenError::Invalid(_))
        ));
    }

    #[test]
    fn a_visitor_token_is_not_an_agent_token() {
        let keys = Keys::new(SECRET, SECRET, SECRET);
        let visitor = keys.mint_visitor("c1");
        assert_eq!(keys.verify_visitor(&visitor).unwrap(), "c1");
        assert!(keys.verify_agent(&visitor).is_err());
    }

    #[test]
    fn media_tokens_are_their_own_kind() {
        let keys = Keys::new(SECRET, SECRET, SECRET);
        let media = mint_media(SECRET, "twilio-main", 60).unwrap();
        assert_eq!(keys.verify_media(&media).unwrap(), "twilio-main");
        assert!(keys.verify_agent(&media).is_err(), "not an agent token");
        let agent = mint_agent(SECRET, "alice", 60).unwrap();
        assert!(keys.verify_media(&agent).is_err(), "not a media token");
    }
}
