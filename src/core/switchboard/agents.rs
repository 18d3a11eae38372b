//! Agents' presence: connecting (with their snapshot), disconnecting (the grace
//! period), their status, and the counts the gauges show.

use std::cmp::Reverse;

use super::{Switchboard, Timer, ack, reply, view};
use crate::core::io::{AgentSnapshot, Effect, Notice, Refusal, Reply, ReqId, RevokeReason};
use crate::core::model::{AgentState, ConnId, Id, Millis, Participant};

impl Switchboard {
    pub(super) fn agent_connected(&mut self, conn: ConnId, agent_id: Id, out: &mut Vec<Effect>) {
        let Some(agent) = self.agents.get_mut(&agent_id) else {
            return;
        };
        agent.slot.online = true;
        agent.generation += 1;
        if agent.slot.state == AgentState::Offline {
            agent.slot.state = AgentState::Away;
        }
        // Back within the grace period still available: can take waiting conversations.
        if agent.slot.state == AgentState::Available {
            self.routing_dirty = true;
        }
        let snapshot = self.snapshot(&agent_id);
        reply(out, conn, None, Reply::AgentWelcome(Box::new(snapshot)));
    }

    pub(super) fn snapshot(&self, agent_id: &Id) -> AgentSnapshot {
        let agent = &self.agents[agent_id];
        AgentSnapshot {
            agent_id: agent_id.clone(),
            display_name: agent.display_name.clone(),
            skills: agent.slot.skills.clone(),
            capacity_chat: agent.slot.capacity[0],
            capacity_voice: agent.slot.capacity[1],
            state: agent.slot.state,
            conversations: agent
                .conversations
                .iter()
                .filter_map(|id| self.conversations.get(id))
                .map(|c| view(c, self.threads.get(&c.rec.id).map_or(0, |t| t.last_seq)))
                .collect(),
        }
    }

    pub(super) fn agent_disconnected(&mut self, agent_id: Id, now: Millis, out: &mut Vec<Effect>) {
        let Some(agent) = self.agents.get_mut(&agent_id) else {
            return;
        };
        agent.slot.online = false;
        agent.generation += 1;
        let timer = Timer::Grace(agent_id.clone(), agent.generation);
        let offers = agent.offers.clone();
        self.timers
            .push(Reverse((now + self.settings.agent_grace_ms, timer)));
        for offer_id in offers {
            self.withdraw_offer(&offer_id, Some(RevokeReason::Withdrawn), now, false, out);
        }
        // A conversation waiting for them as the customer's last agent no longer does.
        self.routing_dirty = true;
    }

    pub(super) fn set_status(
        &mut self,
        conn: ConnId,
        req: ReqId,
        agent_id: Id,
        available: bool,
        now: Millis,
        out: &mut Vec<Effect>,
    ) {
        let Some(agent) = self.agents.get_mut(&agent_id) else {
            return reply(
                out,
                conn,
                req,
                Reply::Refused(Refusal::not_found("unknown agent")),
            );
        };
        let before = agent.slot.state;
        let after = if available {
            AgentState::Available
        } else {
            AgentState::Away
        };
        agent.slot.state = after;
        agent.wrap_up_generation += 1;
        if available {
            agent.missed_in_row = 0;
            if before != AgentState::Available {
                agent.slot.idle_since = now;
            }
        }
        // Available: they can take what waits. Away: a conversation waiting for them
        // as the customer's last agent no longer does.
        self.routing_dirty = true;
        let offers = if available {
            Vec::new()
        } else {
            agent.offers.clone()
        };
        for offer_id in offers {
            self.withdraw_offer(&offer_id, Some(RevokeReason::Withdrawn), now, false, out);
        }
        out.push(Effect::Notify {
            to: Participant::Agent(agent_id),
            notice: Notice::Status {
                state: after,
                reason: None,
            },
        });
        reply(out, conn, req, ack(None, None));
    }

    /// Agent-side view of every open conversation, for tests and the API.
    /// How many agents are in each state: (available, away, wrap-up, offline).
    pub fn agents_by_state(&self) -> [u32; 4] {
        let mut counts = [0u32; 4];
        for agent in self.agents.values() {
            let i = match agent.slot.state {
                AgentState::Available => 0,
                AgentState::Away => 1,
                AgentState::WrapUp => 2,
                AgentState::Offline => 3,
            };
            counts[i] += 1;
        }
        counts
    }

    pub fn agent_state(&self, agent_id: &str) -> Option<AgentState> {
        self.agents.get(agent_id).map(|a| a.slot.state)
    }
}
