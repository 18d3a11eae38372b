//! Queues and agents defined or changed while running (the operator API), and the
//! live state of a queue. Validation of the definitions themselves is the shell's
//! (config); the core only refuses what would break open conversations.

use super::{Agent, INITIAL_HANDLE_MS, Queue, Switchboard};
use crate::core::io::{AgentSettings, QueueSettings, Refusal};
use crate::core::model::{AgentState, ConversationState, Id, Millis};
use crate::core::routing::{self, AgentSlot};

/// A queue right now, for operators.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct QueueState {
    pub waiting: u32,
    /// Offered to an agent, not yet accepted.
    pub offered: u32,
    pub active: u32,
    /// How long the conversation waiting longest has waited (in this queue).
    pub longest_wait_ms: u64,
    /// Agents qualified for the queue, by state (offline: not connected).
    pub agents_available: u32,
    pub agents_away: u32,
    pub agents_wrap_up: u32,
    pub agents_offline: u32,
}

impl Switchboard {
    /// Adds a queue or replaces its settings. Conversations waiting in it are held to
    /// the new requirements from now on.
    pub fn define_queue(&mut self, settings: QueueSettings, now: Millis) {
        let name = settings.name.clone();
        match self.queues.get_mut(&name) {
            Some(queue) => queue.settings = settings,
            None => {
                self.queues.insert(
                    name.clone(),
                    Queue {
                        settings,
                        avg_handle_ms: INITIAL_HANDLE_MS,
                        last_offered: None,
                        opening_armed: None,
                    },
                );
            }
        }
        let queue = &self.queues[&name].settings;
        for conv in self.conversations.values_mut() {
            if conv.rec.queue == name {
                conv.base = routing::merge(&queue.skills, &conv.rec.skills);
                conv.step = usize::MAX; // recomputed below
                super::apply_steps(conv, queue, now);
            }
            // Classes of other queues' conversations include the skills of queues
            // they widened to, which may be this one.
            conv.class = None;
        }
        let waiting: Vec<Id> = self.waiting.ids().cloned().collect();
        for id in waiting {
            self.relane(&id);
        }
        self.routing_dirty = true;
    }

    /// Removes a queue nobody needs: no open conversation is in it.
    pub fn remove_queue(&mut self, name: &str) -> Result<(), Refusal> {
        if !self.queues.contains_key(name) {
            return Err(Refusal::not_found(format!(
                "there is no queue named `{name}`"
            )));
        }
        let open = self
            .conversations
            .values()
            .filter(|c| &*c.rec.queue == name)
            .count();
        if open > 0 {
            return Err(Refusal::conflict(format!(
                "{open} open conversation(s) are in queue `{name}`; it can be removed once they close"
            )));
        }
        self.queues.remove(name);
        Ok(())
    }

    /// Adds an agent or replaces their skills, languages, capacity and name; what they
    /// hold and their state stay.
    pub fn define_agent(&mut self, settings: AgentSettings) {
        let capacity = [settings.capacity_chat, settings.capacity_voice];
        match self.agents.get_mut(&settings.id) {
            Some(agent) => {
                agent.display_name = settings.display_name;
                agent.slot.skills = settings.skills;
                agent.slot.languages = settings.languages;
                agent.slot.capacity = capacity;
                // Their conversations write under the new name from now on.
                for id in agent.conversations.clone() {
                    self.seat(&id);
                }
            }
            None => {
                self.agents.insert(
                    settings.id.clone(),
                    Agent {
                        slot: AgentSlot {
                            id: settings.id.clone(),
                            skills: settings.skills,
                            languages: settings.languages,
                            capacity,
                            load: [0, 0],
                            state: AgentState::Offline,
                            online: false,
                            idle_since: 0,
                            ratings: Vec::new(),
                        },
                        display_name: settings.display_name,
                        conversations: Vec::new(),
                        offers: Vec::new(),
                        missed_in_row: 0,
                        generation: 0,
                        wrap_up_generation: 0,
                    },
                );
            }
        }
        self.routing_dirty = true;
    }

    /// Removes an agent who is not connected and holds nothing.
    pub fn remove_agent(&mut self, id: &str) -> Result<(), Refusal> {
        let Some(agent) = self.agents.get(id) else {
            return Err(Refusal::not_found(format!("there is no agent `{id}`")));
        };
        if agent.slot.online || !agent.conversations.is_empty() || !agent.offers.is_empty() {
            return Err(Refusal::conflict(format!(
                "agent `{id}` is connected or holds conversations; remove them once they are offline with none"
            )));
        }
        self.agents.remove(id);
        self.pools.remove(&Id::from(id));
        Ok(())
    }

    pub fn queue_state(&self, name: &str, now: Millis) -> Option<QueueState> {
        let queue = &self.queues.get(name)?.settings;
        let mut state = QueueState::default();
        for conv in self
            .conversations
            .values()
            .filter(|c| &*c.rec.queue == name)
        {
            match conv.rec.state {
                ConversationState::Queued => {
                    state.waiting += 1;
                    state.longest_wait_ms = state
                        .longest_wait_ms
                        .max(now.saturating_sub(conv.rec.entered_at));
                }
                ConversationState::Offered => state.offered += 1,
                ConversationState::Active => state.active += 1,
                ConversationState::Closed => {}
            }
        }
        let qualified = self
            .agents
            .values()
            .filter(|a| routing::qualified(&a.slot.skills, &queue.skills))
            .filter(|a| a.slot.speaks(queue.language.as_deref()));
        for agent in qualified {
            let counter = match (agent.slot.online, agent.slot.state) {
                (false, _) | (_, AgentState::Offline) => &mut state.agents_offline,
                (true, AgentState::Available) => &mut state.agents_available,
                (true, AgentState::Away) => &mut state.agents_away,
                (true, AgentState::WrapUp) => &mut state.agents_wrap_up,
            };
            *counter += 1;
        }
        Some(state)
    }

    pub fn has_queue(&self, name: &str) -> bool {
        self.queues.contains_key(name)
    }

    pub fn agent_ids(&self) -> impl Iterator<Item = &Id> {
        self.agents.keys()
    }
}
