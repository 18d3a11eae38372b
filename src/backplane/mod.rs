//! Several nodes (docs/scaling.md): what crosses between them. One node at a time
//! owns routing (a lease with a fencing token in Redis, checked by the store on every
//! write); every node holds WebSockets, and a socket held by a node that does not
//! own routing has its frames relayed to and from the owner on the nodes' channels.
//!
//! - [`envelope`]: the binary batches of frames on a node's channel (pure).
//! - `redis` (feature `redis`): registry, lease, channels.

pub mod envelope;
#[cfg(feature = "redis")]
pub mod redis;
