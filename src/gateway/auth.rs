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
    /// The business's identity key; `None`: identity is off.
    identity: Option<DecodingKey>,
    identity_audience: Option<String>,
    identity_issuer: Option<String>,
    agent_issuer: Option<String>,
}

/// How long a visitor token is good for; every welcome hands out a fresh one.
pub const VISITOR_TTL_SECS: u64 = 180 * 86_400;

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
            identity_audience: None,
            identity_issuer: None,
            agent_issuer: None,
        }
    }

    /// Turns on customer identity tokens signed with `secret` (and carrying
    /// `audience` and `issuer`, when given).
    pub fn with_identity(
        mut self,
        secret: &str,
        audience: Option<String>,
        issuer: Option<String>,
    ) -> Keys {
        self.identity = Some(DecodingKey::from_secret(secret.as_bytes()));
        self.identity_audience = audience;
        self.identity_issuer = issuer;
        self
    }

    /// Agent tokens must carry `iss` = `issuer`.
    pub fn with_agent_issuer(mut self, issuer: Option<String>) -> Keys {
        self.agent_issuer = issuer;
        self
    }

    pub fn identity_enabled(&self) -> bool {
        self.identity.is_some()
    }

    /// A customer identity token: HS256 only (`none` and every other algorithm are
    /// refused), `exp` and a usable `sub` required.
    pub fn verify_identity(&self, token: &str) -> Result<IdentityClaims, TokenError> {
        let Some(key) = &self.identity else {
            return Err(TokenError::Invalid(
                "identity tokens are not enabled on this gateway (auth.identity_secret)".into(),
            ));
        };
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = 5;
        match &self.identity_audience {
            Some(aud) => validation.set_audience(&[aud]),
            None => validation.validate_aud = false,
        }
        match &self.identity_issuer {
            Some(iss) => {
                validation.set_issuer(&[iss]);
                validation.set_required_spec_claims(&["exp", "sub", "iss"]);
            }
            None => validation.set_required_spec_claims(&["exp", "sub"]),
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
        validation.leeway = 5;
        match &self.agent_issuer {
            Some(iss) => {
                validation.set_issuer(&[iss]);
                validation.set_required_spec_claims(&["exp", "sub", "aud", "iss"]);
            }
            None => validation.set_required_spec_claims(&["exp", "sub", "aud"]),
        }
        jsonwebtoken::decode::<AgentClaims>(token, &self.agent_dec, &validation)
            .map(|data| data.claims)
            .map_err(|e| match e.kind() {
                jsonwebtoken::errors::ErrorKind::ExpiredSignature => TokenError::Expired,
                _ => TokenError::Invalid(e.to_string()),
            })
    }

    pub fn mint_visitor(&self, customer_id: &str) -> String {
        let now = unix_now();
        let claims = VisitorClaims {
            sub: customer_id.to_owned(),
            iat: now,
            aud: VISITOR_AUDIENCE.to_owned(),
            exp: Some(now + VISITOR_TTL_SECS),
        };
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.visitor_enc)
            .unwrap_or_default()
    }

    pub fn verify_visitor(&self, token: &str) -> Result<String, TokenError> {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_audience(&[VISITOR_AUDIENCE]);
        // `exp` is checked when present (tokens from before it existed have none).
        validation.set_required_spec_claims(&["sub", "aud"]);
        validation.leeway = 5;
        jsonwebtoken::decode::<VisitorClaims>(token, &self.visitor_dec, &validation)
            .map(|data| data.claims.sub)
            .map_err(|e| match e.kind() {
                jsonwebtoken::errors::ErrorKind::ExpiredSignature => TokenError::Expired,
                _ => TokenError::Invalid(e.to_string()),
            })
    }
}

/// Mints an agent token valid for `ttl_secs` from now.
pub fn mint_agent(secret: &str, agent_id: &str, ttl_secs: u64) -> Result<String, String> {
    mint_agent_from(secret, agent_id, ttl_secs, None)
}

/// Mints an agent token valid for `ttl_secs` from now, with `iss` = `issuer` (when
/// the gateway requires one: `auth.agent_issuer`).
pub fn mint_agent_from(
    secret: &str,
    agent_id: &str,
    ttl_secs: u64,
    issuer: Option<&str>,
) -> Result<String, String> {
    let now = unix_now();
    let claims = AgentClaims {
        sub: agent_id.to_owned(),
        exp: now + ttl_secs,
        iat: now,
        aud: AGENT_AUDIENCE.to_owned(),
        iss: issuer.map(str::to_owned),
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
                iss: None,
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
    fn an_issuer_once_required_is_checked() {
        let keys = Keys::new(SECRET, SECRET, SECRET).with_agent_issuer(Some("sso".into()));
        let right = mint_agent_from(SECRET, "alice", 60, Some("sso")).unwrap();
        assert_eq!(keys.verify_agent(&right).unwrap().sub, "alice");
        let wrong = mint_agent_from(SECRET, "alice", 60, Some("elsewhere")).unwrap();
        assert!(keys.verify_agent(&wrong).is_err(), "another issuer");
        let none = mint_agent(SECRET, "alice", 60).unwrap();
        assert!(keys.verify_agent(&none).is_err(), "no issuer at all");
    }

    #[test]
    fn an_unsigned_or_other_algorithm_token_is_refused() {
        let keys = Keys::new(SECRET, SECRET, SECRET);
        let claims = AgentClaims {
            sub: "alice".into(),
            exp: unix_now() + 60,
            iat: unix_now(),
            aud: AGENT_AUDIENCE.into(),
            iss: None,
        };
        let hs512 = jsonwebtoken::encode(
            &Header::new(Algorithm::HS512),
            &claims,
            &EncodingKey::from_secret(SECRET.as_bytes()),
        )
        .unwrap();
        assert!(keys.verify_agent(&hs512).is_err(), "HS512 is not HS256");
        // alg `none`: header and claims, no signature.
        use base64::Engine;
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let none = format!(
            "{}.{}.",
            b64.encode(r#"{"alg":"none","typ":"JWT"}"#),
            b64.encode(serde_json::to_vec(&claims).unwrap())
        );
        assert!(keys.verify_agent(&none).is_err(), "alg none");
    }

    #[test]
    fn visitor_tokens_expire_but_old_ones_without_exp_still_work() {
        let keys = Keys::new(SECRET, SECRET, SECRET);
        let enc = EncodingKey::from_secret(SECRET.as_bytes());
        let old = VisitorClaims {
            sub: "c1".into(),
            iat: 0,
            aud: VISITOR_AUDIENCE.into(),
            exp: None,
        };
        let old = jsonwebtoken::encode(&Header::new(Algorithm::HS256), &old, &enc).unwrap();
        assert_eq!(keys.verify_visitor(&old).unwrap(), "c1");
        let expired = VisitorClaims {
            sub: "c1".into(),
            iat: 0,
            aud: VISITOR_AUDIENCE.into(),
            exp: Some(unix_now() - 3600),
        };
        let expired = jsonwebtoken::encode(&Header::new(Algorithm::HS256), &expired, &enc).unwrap();
        assert_eq!(keys.verify_visitor(&expired), Err(TokenError::Expired));
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
