//! Claims of the tokens that cross the wire: agent JWTs (HS256, minted by
//! `warmline token agent ID` or the business) and visitor tokens (signed by the gateway).

use serde::{Deserialize, Serialize};

pub const AGENT_AUDIENCE: &str = "warmline-agent";
pub const VISITOR_AUDIENCE: &str = "warmline-visitor";
pub const MEDIA_AUDIENCE: &str = "warmline-media";

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AgentClaims {
    /// The agent id, as in the config.
    pub sub: String,
    /// Expiry, seconds since the UNIX epoch.
    pub exp: u64,
    /// Issued at: a revocation refuses every token of the agent issued at or before it.
    #[serde(default)]
    pub iat: u64,
    pub aud: String,
    /// Required (and checked) when `auth.agent_issuer` is set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iss: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct VisitorClaims {
    /// The customer id the gateway gave this visitor.
    pub sub: String,
    pub iat: u64,
    pub aud: String,
    /// Expiry (seconds since the UNIX epoch). Every welcome hands out a fresh token,
    /// so a returning visitor's never runs out; tokens minted before expiry existed
    /// carry none and are accepted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exp: Option<u64>,
}

/// A telephony provider's token for `/ws/media` (`warmline token media NAME`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MediaClaims {
    /// The provider or trunk the token was minted for (logged with its calls).
    pub sub: String,
    /// Expiry, seconds since the UNIX epoch.
    pub exp: u64,
    #[serde(default)]
    pub iat: u64,
    pub aud: String,
}

/// A customer identity token, signed by the business's backend (`hello.identity`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct IdentityClaims {
    /// The business's customer id: the customer across devices and channels.
    pub sub: String,
    pub exp: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
}
