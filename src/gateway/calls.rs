//! Live calls and where their audio goes. Audio does not pass through the hub: a
//! caller's frame goes from the media stream's task straight to the agent's
//! connection queue, and back, through this registry (short locks, never held
//! across an `.await`). The hub only says who the agent of a call is, from the
//! assignment records it commits.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Instant;

use axum::body::Bytes;
use tokio::sync::mpsc;

use crate::core::signals::voice::{Party, VoiceMeter, VoiceSettings, VoiceSignals};
use crate::core::{ConnId, Id, Millis};

/// What the agent side sends the provider's stream.
#[derive(Debug)]
pub enum ToProvider {
    /// Agent audio (mu-law 8 kHz), sent as an outbound `media` event.
    Audio(Bytes),
    /// Ask the provider to tell us when playback reaches this point.
    Mark(String),
    /// Drop the audio the provider has buffered (the caller barged in).
    Clear,
}

/// One call leg: a media stream attached to a conversation.
pub struct Call {
    /// Names the call on the agent's binary frames.
    pub handle: u16,
    pub conversation_id: Id,
    /// The agent whose client gets the caller's audio (the conversation's agent).
    agent: RwLock<Option<Id>>,
    to_provider: mpsc::Sender<ToProvider>,
    meter: Mutex<VoiceMeter>,
    started: Instant,
    /// Frames dropped because a queue was full (agent side, provider side).
    pub dropped_to_agent: AtomicU64,
    pub dropped_to_provider: AtomicU64,
}

impl Call {
    /// Milliseconds since the call started (the agent's audio timeline).
    pub fn elapsed_ms(&self) -> Millis {
        u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    pub fn agent(&self) -> Option<Id> {
        self.agent.read().ok().and_then(|a| a.clone())
    }

    pub fn set_agent(&self, agent: Option<Id>) {
        if let Ok(mut a) = self.agent.write() {
            *a = agent;
        }
    }

    /// Measures a frame of `party`'s audio at `at` (ms on the call's timeline).
    pub fn measure(&self, party: Party, at: Millis, mulaw: &[u8]) {
        if let Ok(mut meter) = self.meter.lock() {
            meter.frame(party, at, mulaw);
        }
    }

    pub fn hold(&self, on: bool) {
        let at = self.elapsed_ms();
        if let Ok(mut meter) = self.meter.lock() {
            meter.hold(on, at);
        }
    }

    pub fn signals(&self) -> VoiceSignals {
        let at = self.elapsed_ms();
        self.meter
            .lock()
            .map(|m| m.snapshot(at))
            .unwrap_or_default()
    }

    pub fn finish(&self) -> VoiceSignals {
        let at = self.elapsed_ms();
        self.meter
            .lock()
            .map(|mut m| m.finish(at))
            .unwrap_or_default()
    }

    /// Queues something for the provider; `false` if the queue was full (dropped).
    pub fn to_provider(&self, item: ToProvider) -> bool {
        match self.to_provider.try_send(item) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(_)) => {
                self.dropped_to_provider.fetch_add(1, Ordering::Relaxed);
                false
            }
            Err(mpsc::error::TrySendError::Closed(_)) => false,
        }
    }
}

#[derive(Default)]
struct Table {
    by_handle: HashMap<u16, Arc<Call>>,
    by_conversation: HashMap<Id, u16>,
    next: u16,
}

/// Every live call, by handle and by conversation.
#[derive(Default)]
pub struct Calls {
    table: Mutex<Table>,
}

impl Calls {
    /// Registers a call leg. `None` when 65,535 calls are live (no handle left) or the
    /// conversation already has a call.
    pub fn open(
        &self,
        conversation_id: Id,
        to_provider: mpsc::Sender<ToProvider>,
        voice: &VoiceSettings,
    ) -> Option<Arc<Call>> {
        let mut table = self.table.lock().ok()?;
        if table.by_conversation.contains_key(&conversation_id) {
            return None;
        }
        let mut handle = table.next;
        for _ in 0..=u16::MAX {
            handle = handle.wrapping_add(1).max(1);
            if !table.by_handle.contains_key(&handle) {
                break;
            }
        }
        if table.by_handle.contains_key(&handle) {
            return None;
        }
        table.next = handle;
        let call = Arc::new(Call {
            handle,
            conversation_id: conversation_id.clone(),
            agent: RwLock::new(None),
            to_provider,
            meter: Mutex::new(VoiceMeter::new(voice, 0)),
            started: Instant::now(),
            dropped_to_agent: AtomicU64::new(0),
            dropped_to_provider: AtomicU64::new(0),
        });
        table.by_handle.insert(handle, call.clone());
        table.by_conversation.insert(conversation_id, handle);
        Some(call)
    }

    pub fn close(&self, call: &Call) {
        if let Ok(mut table) = self.table.lock() {
            table.by_handle.remove(&call.handle);
            table.by_conversation.remove(&call.conversation_id);
        }
    }

    pub fn by_handle(&self, handle: u16) -> Option<Arc<Call>> {
        self.table.lock().ok()?.by_handle.get(&handle).cloned()
    }

    pub fn by_conversation(&self, conversation_id: &str) -> Option<Arc<Call>> {
        let table = self.table.lock().ok()?;
        let handle = table.by_conversation.get(conversation_id)?;
        table.by_handle.get(handle).cloned()
    }

    pub fn len(&self) -> usize {
        self.table.lock().map_or(0, |t| t.by_handle.len())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// An agent's connections, each with its audio queue.
type Sinks = Vec<(ConnId, mpsc::Sender<Bytes>)>;

/// Each connected agent connection's audio queue, by agent.
#[derive(Default)]
pub struct AgentAudio {
    sinks: RwLock<HashMap<Id, Sinks>>,
}

impl AgentAudio {
    pub fn add(&self, agent: Id, conn: ConnId, tx: mpsc::Sender<Bytes>) {
        if let Ok(mut sinks) = self.sinks.write() {
            sinks.entry(agent).or_default().push((conn, tx));
        }
    }

    pub fn remove(&self, agent: &Id, conn: ConnId) {
        if let Ok(mut sinks) = self.sinks.write()
            && let Some(list) = sinks.get_mut(agent)
        {
            list.retain(|(c, _)| *c != conn);
            if list.is_empty() {
                sinks.remove(agent);
            }
        }
    }

    /// Sends a frame to every connection of `agent`. Returns how many were dropped
    /// because their queue was full.
    pub fn send(&self, agent: &Id, frame: &Bytes) -> u64 {
        let Ok(sinks) = self.sinks.read() else {
            return 0;
        };
        let mut dropped = 0;
        for (_, tx) in sinks.get(agent).into_iter().flatten() {
            if let Err(mpsc::error::TrySendError::Full(_)) = tx.try_send(frame.clone()) {
                dropped += 1;
            }
        }
        dropped
    }
}
