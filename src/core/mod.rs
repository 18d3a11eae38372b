//! The pure core: conversation lifecycle, per-conversation `seq`, offers and routing,
//! as a deterministic state machine. Inputs and `now` in, effects out. No I/O, no
//! clock, no tokio, no JSON: the gateway translates the wire into `Input`s and
//! carries out the `Effect`s.

pub(crate) mod conversation;
pub mod hours;
pub mod io;
pub mod model;
pub mod pools;
#[cfg(any(test, feature = "fuzzing"))]
mod proptests;
pub mod routing;
#[cfg(test)]
mod routing_props;
pub mod signals;
pub mod switchboard;

/// The switchboard driven against the reference model of the property tests, for the
/// `core_sequence` fuzz target (`fuzz/`). Feature `fuzzing`; not part of the API.
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod checked {
    pub use super::proptests::{AgentSpec, CUSTOMERS, Harness, Op, World};
}

pub use io::*;
pub use model::*;
pub use switchboard::{QueueState, Switchboard, WaitingLine};
