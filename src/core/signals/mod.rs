//! Satisfaction signals computed in the core: measured from what happens in a
//! conversation, never assumed. `voice`: talk, silence, crosstalk and hold of a call; `coaching`: flags from the
//! agent's own words.

pub mod coaching;
pub mod conversation;
pub mod satisfaction;
pub mod score;
pub mod voice;
