//! The audit trail of refusals: one log line (target `warmline::audit`, level warn)
//! for every request the gateway denied, whoever made it, and a counter by role and
//! reason. Floods are sampled so that they cannot become log floods: frames over a
//! rate log the first refusal of a minute and the close, refused connections the
//! first of each minute per address; every one is counted. A line names the role, who (agent or customer id, or the client address
//! before anyone is known), the action and why; never a token or message text.

use super::metrics::Metrics;

/// Why something was denied: the `reason` label of `warmline_denials_total`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Denial {
    /// No credential, or one that does not verify (bad signature, expired, unknown).
    Unauthorized,
    /// A valid caller asked for what is not theirs (another conversation, say).
    Forbidden,
    /// The agent's access was revoked.
    Revoked,
    /// Over a rate: frames per connection, connections per address, starts.
    RateLimited,
    /// Over a count: connections open at once per customer or agent.
    TooManyConnections,
}

impl Denial {
    pub const ALL: [Denial; 5] = [
        Denial::Unauthorized,
        Denial::Forbidden,
        Denial::Revoked,
        Denial::RateLimited,
        Denial::TooManyConnections,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Denial::Unauthorized => "unauthorized",
            Denial::Forbidden => "forbidden",
            Denial::Revoked => "revoked",
            Denial::RateLimited => "rate_limited",
            Denial::TooManyConnections => "too_many_connections",
        }
    }
}

/// Roles that can be denied: the connection roles and the operator API.
pub const ROLES: [&str; 4] = ["customer", "agent", "media", "operator"];

/// Logs and counts one denial. `who`: an agent or customer id, or a client address.
pub fn denied(
    metrics: &Metrics,
    role: &'static str,
    who: &str,
    action: &str,
    why: Denial,
    detail: &str,
) {
    metrics.denied(role, why);
    tracing::warn!(
        target: "warmline::audit",
        role,
        who,
        action,
        reason = why.as_str(),
        detail,
        "denied"
    );
}
