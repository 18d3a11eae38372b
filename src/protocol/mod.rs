//! Wire types of protocol v1: what clients send (`client`), what the gateway sends
//! (`server`), error codes and close codes (`codes`). No logic beyond decoding and
//! validation: the gateway translates these into core inputs.

pub mod client;
pub mod codes;
#[cfg(test)]
mod decode_props;
pub mod media;
pub mod server;
pub mod tokens;

pub use client::{AgentFrame, CustomerFrame, Decoded, decode_agent, decode_customer};
pub use codes::{CloseCode, ErrorCode, Reconnect};
