//! The pure core: conversation lifecycle, per-conversation `seq`, offers and routing,
//! as a deterministic state machine. Inputs and `now` in, effects out. No I/O, no
//! clock, no tokio, no JSON: the gateway translates the wire into `Input`s and
//! carries out the `Effect`s.

pub mod hours;
pub mod io;
pub mod model;
pub mod pools;
#[cfg(test)]
mod proptests;
pub mod routing;
#[cfg(test)]
mod routing_props;
pub mod signals;
pub mod switchboard;

pub use io::*;
pub use model::*;
pub use switchboard::{QueueState, Switchboard, WaitingLine};
