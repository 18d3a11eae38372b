//! Error codes (the `code` of an `error` frame, also the metric label) and the
//! WebSocket close codes the gateway uses. docs/protocol.md publishes both tables.

/// The closed set of error codes. One value maps to the wire code, the metric label
/// and (for the HTTP API) a status.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    BadJson,
    UnknownType,
    InvalidField,
    HelloRequired,
    Unauthorized,
    Forbidden,
    NotFound,
    Conflict,
    RateLimited,
    TooLarge,
    Unavailable,
    Internal,
}

impl ErrorCode {
    pub const ALL: [ErrorCode; 12] = [
        ErrorCode::BadJson,
        ErrorCode::UnknownType,
        ErrorCode::InvalidField,
        ErrorCode::HelloRequired,
        ErrorCode::Unauthorized,
        ErrorCode::Forbidden,
        ErrorCode::NotFound,
        ErrorCode::Conflict,
        ErrorCode::RateLimited,
        ErrorCode::TooLarge,
        ErrorCode::Unavailable,
        ErrorCode::Internal,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::BadJson => "bad_json",
            ErrorCode::UnknownType => "unknown_type",
            ErrorCode::InvalidField => "invalid_field",
            ErrorCode::HelloRequired => "hello_required",
            ErrorCode::Unauthorized => "unauthorized",
            ErrorCode::Forbidden => "forbidden",
            ErrorCode::NotFound => "not_found",
            ErrorCode::Conflict => "conflict",
            ErrorCode::RateLimited => "rate_limited",
            ErrorCode::TooLarge => "too_large",
            ErrorCode::Unavailable => "unavailable",
            ErrorCode::Internal => "internal",
        }
    }

    /// Whether the frame was the client's fault (counts toward the bad-frame limit).
    pub fn is_client_fault(self) -> bool {
        matches!(
            self,
            ErrorCode::BadJson
                | ErrorCode::UnknownType
                | ErrorCode::InvalidField
                | ErrorCode::HelloRequired
                | ErrorCode::TooLarge
        )
    }
}

/// WebSocket close codes. RFC 6455 codes where they fit, 4000-4999 for Warmline's own.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CloseCode {
    /// 1000: the conversation is over or the client asked to close. Reconnect: no need.
    Normal,
    /// 1001: the gateway is shutting down or restarting. Reconnect: yes, then resume.
    GoingAway,
    /// 1002: the client broke the WebSocket protocol (RFC 6455). Reconnect: only after fixing the client.
    ProtocolError,
    /// 1007: a text message that is not UTF-8. Reconnect: only after fixing the client.
    InvalidData,
    /// 1008: policy: too many bad frames, or no `hello` in time. Reconnect: only after fixing the client.
    Policy,
    /// 1009: a frame or message over the size limit. Reconnect: yes, without resending it.
    TooLarge,
    /// 1011: unexpected server error. Reconnect: yes, with backoff.
    Internal,
    /// 1012: several nodes: the node owning routing changed (or this node lost its
    /// backplane). Reconnect (to any node): yes, then resume.
    ServiceRestart,
    /// 4000: no pong within the keepalive timeout. Reconnect: yes.
    KeepaliveTimeout,
    /// 4001: the client read too slowly and its outbound queue overflowed. Reconnect: yes, then resume.
    SlowConsumer,
    /// 4003: the agent token expired during the connection. Reconnect: with a fresh token.
    TokenExpired,
    /// 4004: an operator revoked this agent's access. Reconnect: no (its tokens are refused).
    Revoked,
}

/// What a close code asks of the client about reconnecting: the "reconnect?" column
/// of docs/protocol.md's close-code table. The pages' JavaScript carries the same
/// table (`RECONNECT` in web/common.js and web/widget.js); tests/close_codes.rs fails
/// when any of them disagree.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reconnect {
    /// Reconnect by itself (with backoff), then `resume` and send again what was not
    /// acknowledged.
    Yes,
    /// Reconnect and resume, but do not send again by itself what was not
    /// acknowledged: one of those frames was refused (too large) and would be again.
    WithoutResending,
    /// Reconnect with a fresh token.
    WithFreshToken,
    /// Do not reconnect by itself: there is nothing to come back for (1000), or a
    /// person must act first (fix the client, back off, sign in again).
    No,
}

impl Reconnect {
    /// The name the JavaScript table uses.
    pub fn as_str(self) -> &'static str {
        match self {
            Reconnect::Yes => "yes",
            Reconnect::WithoutResending => "without_resending",
            Reconnect::WithFreshToken => "fresh_token",
            Reconnect::No => "no",
        }
    }
}

impl CloseCode {
    pub const ALL: [CloseCode; 12] = [
        CloseCode::Normal,
        CloseCode::GoingAway,
        CloseCode::ProtocolError,
        CloseCode::InvalidData,
        CloseCode::Policy,
        CloseCode::TooLarge,
        CloseCode::Internal,
        CloseCode::ServiceRestart,
        CloseCode::KeepaliveTimeout,
        CloseCode::SlowConsumer,
        CloseCode::TokenExpired,
        CloseCode::Revoked,
    ];

    /// What the client should do about reconnecting after this close.
    pub fn reconnect(self) -> Reconnect {
        match self {
            CloseCode::GoingAway
            | CloseCode::Internal
            | CloseCode::ServiceRestart
            | CloseCode::KeepaliveTimeout
            | CloseCode::SlowConsumer => Reconnect::Yes,
            CloseCode::TooLarge => Reconnect::WithoutResending,
            CloseCode::TokenExpired => Reconnect::WithFreshToken,
            CloseCode::Normal
            | CloseCode::ProtocolError
            | CloseCode::InvalidData
            | CloseCode::Policy
            | CloseCode::Revoked => Reconnect::No,
        }
    }

    pub fn code(self) -> u16 {
        match self {
            CloseCode::Normal => 1000,
            CloseCode::GoingAway => 1001,
            CloseCode::ProtocolError => 1002,
            CloseCode::InvalidData => 1007,
            CloseCode::Policy => 1008,
            CloseCode::TooLarge => 1009,
            CloseCode::Internal => 1011,
            CloseCode::ServiceRestart => 1012,
            CloseCode::KeepaliveTimeout => 4000,
            CloseCode::SlowConsumer => 4001,
            CloseCode::TokenExpired => 4003,
            CloseCode::Revoked => 4004,
        }
    }

    /// The metric label for disconnects initiated by the gateway.
    pub fn label(self) -> &'static str {
        match self {
            CloseCode::Normal => "normal",
            CloseCode::GoingAway => "going_away",
            CloseCode::ProtocolError => "protocol_error",
            CloseCode::InvalidData => "invalid_data",
            CloseCode::Policy => "policy",
            CloseCode::TooLarge => "too_large",
            CloseCode::Internal => "internal",
            CloseCode::ServiceRestart => "service_restart",
            CloseCode::KeepaliveTimeout => "keepalive_timeout",
            CloseCode::SlowConsumer => "slow_consumer",
            CloseCode::TokenExpired => "token_expired",
            CloseCode::Revoked => "revoked",
        }
    }
}
