//! Transfers. Cold: the agent leaves at once and the conversation waits in the target
//! queue ahead of the others (or for the named agent first). Warm: the agent stays
//! until a target accepts, then leaves; if nobody takes it, it stays with them and
//! they are told. Either way the conversation is never left without an agent or a
//! place in a queue, and each completed transfer is counted on it.

use super::{Switchboard, ack, reply};
use crate::core::io::{Effect, Notice, Refusal, Reply, ReqId, TransferTarget};
use crate::core::model::{ConnId, ConversationState, Id, Millis, Participant, Record, Text};
use crate::core::routing::{self, Need, Reason};

/// A warm transfer under way.
#[derive(Clone, Debug)]
pub(super) struct PendingTransfer {
    pub from: Id,
    pub to: TransferTarget,
    pub note: Option<Text>,
    /// Agents already offered it in this transfer.
    pub tried: Vec<Id>,
}

/// A cold transfer, until an agent accepts.
#[derive(Clone, Debug)]
pub(super) struct Handoff {
    /// The agent who passed it on: not offered it back.
    pub from: Id,
    pub note: Option<Text>,
    /// The named agent to try first.
    pub agent: Option<Id>,
}

impl Switchboard {
    #[allow(clippy::too_many_arguments)]
    pub(super) fn transfer(
        &mut self,
        conn: ConnId,
        req: ReqId,
        agent_id: Id,
        conversation_id: Id,
        to: TransferTarget,
        warm: bool,
        note: Option<Text>,
        now: Millis,
        out: &mut Vec<Effect>,
    ) {
        if let Err(refusal) = self.check_transfer(&agent_id, &conversation_id, &to) {
            return reply(out, conn, req, Reply::Refused(refusal));
        }
        reply(out, conn, req, ack(Some(conversation_id.clone()), None));
        if let Some(thread) = self.threads.get_mut(&conversation_id) {
            thread.tracker.transferred(now, warm);
        }
        if warm {
            let conv = self
                .conversations
                .get_mut(&conversation_id)
                .expect("checked");
            conv.transfer = Some(PendingTransfer {
                from: agent_id,
                to,
                note,
                tried: Vec::new(),
            });
            self.continue_warm(&conversation_id, now, out);
        } else {
            self.cold(&conversation_id, agent_id, to, note, now, out);
        }
    }

    fn check_transfer(
        &self,
        agent_id: &Id,
        conversation_id: &Id,
        to: &TransferTarget,
    ) -> Result<(), Refusal> {
        self.held_by_agent(conversation_id, agent_id)?;
        if self.conversations[conversation_id].transfer.is_some() {
            return Err(Refusal::conflict(
                "a transfer of this conversation is already under way",
            ));
        }
        match to {
            TransferTarget::Queue(q) if !self.queues.contains_key(q) => {
                Err(Refusal::not_found(format!("there is no queue named `{q}`")))
            }
            TransferTarget::Agent(a) if !self.agents.contains_key(a) => {
                Err(Refusal::not_found(format!("there is no agent `{a}`")))
            }
            TransferTarget::Agent(a) if a == agent_id => Err(Refusal::conflict(
                "a conversation cannot be transferred to yourself",
            )),
            _ => Ok(()),
        }
    }

    fn cold(
        &mut self,
        conversation_id: &Id,
        from: Id,
        to: TransferTarget,
        note: Option<Text>,
        now: Millis,
        out: &mut Vec<Effect>,
    ) {
        self.release(conversation_id, &from, now, out);
        let conv = self
            .conversations
            .get_mut(conversation_id)
            .expect("checked");
        if let TransferTarget::Queue(q) = &to {
            conv.rec.queue = q.clone();
        }
        let queue = &self.queues[&conv.rec.queue].settings;
        // Ahead of the others in the target queue.
        conv.rec.priority = queue.priority.saturating_add(1);
        // Persisted below as waiting, not as active without an agent.
        conv.rec.state = ConversationState::Queued;
        conv.rec.agent_id = None;
        conv.rec.entered_at = now;
        conv.rec.transfers += 1;
        conv.base = routing::merge(&queue.skills, &conv.rec.skills);
        conv.need = conv.base.clone();
        conv.step = 0;
        conv.class = None;
        conv.declined.clear();
        conv.queued_sent = None;
        conv.handoff = Some(Handoff {
            from: from.clone(),
            note,
            agent: match &to {
                TransferTarget::Agent(a) => Some(a.clone()),
                TransferTarget::Queue(_) => None,
            },
        });
        self.wait_persisted(conversation_id, now, out);
        self.tell_customer(conversation_id, &from, &to, now, out);
        out.push(Effect::Notify {
            to: Participant::Agent(from),
            notice: Notice::Transferred {
                conversation_id: conversation_id.clone(),
                to,
                warm: false,
            },
        });
    }

    /// Offers a warm transfer to its next candidate, or gives it up and tells the agent.
    pub(super) fn continue_warm(
        &mut self,
        conversation_id: &Id,
        now: Millis,
        out: &mut Vec<Effect>,
    ) {
        let Some(conv) = self.conversations.get(conversation_id) else {
            return;
        };
        let Some(pending) = &conv.transfer else {
            return;
        };
        let vxc = self.settings.voice_excludes_chat;
        let skip = |a: &Id| *a == pending.from || pending.tried.contains(a);
        let next = match &pending.to {
            TransferTarget::Agent(a) => self
                .agents
                .get(a)
                .filter(|agent| !skip(a) && agent.slot.can_take(conv.rec.channel, vxc))
                .map(|_| a.clone()),
            TransferTarget::Queue(q) => {
                let queue = &self.queues[q].settings;
                let need_skills = routing::merge(&queue.skills, &conv.rec.skills);
                let need = Need {
                    channel: conv.rec.channel,
                    original: &need_skills,
                    current: &need_skills,
                    widened: &[],
                    language: conv.rec.language.as_deref().or(queue.language.as_deref()),
                    rating_queue: self.settings.prefer_satisfied.then_some(&**q),
                };
                routing::pick(
                    self.agents.values().map(|a| &a.slot),
                    &need,
                    queue.strategy,
                    vxc,
                    self.queues[q].last_offered.as_ref(),
                    skip,
                )
                .map(|(a, _)| a.id.clone())
            }
        };
        match next {
            Some(agent_id) => {
                let conv = self
                    .conversations
                    .get_mut(conversation_id)
                    .expect("checked");
                if let Some(pending) = conv.transfer.as_mut() {
                    pending.tried.push(agent_id.clone());
                }
                self.make_offer(conversation_id, agent_id, Reason::Transfer, now, out);
            }
            None => {
                let conv = self
                    .conversations
                    .get_mut(conversation_id)
                    .expect("checked");
                let pending = conv.transfer.take().expect("checked");
                let reason = if pending.tried.is_empty() {
                    "nobody who could take it is available"
                } else {
                    "nobody accepted it"
                };
                out.push(Effect::Notify {
                    to: Participant::Agent(pending.from),
                    notice: Notice::TransferFailed {
                        conversation_id: conversation_id.clone(),
                        reason,
                    },
                });
            }
        }
    }

    /// A warm transfer's target accepted: the first agent leaves, the count goes up.
    /// The caller then assigns the conversation to the new agent.
    pub(super) fn hand_over(&mut self, conversation_id: &Id, now: Millis, out: &mut Vec<Effect>) {
        let Some(pending) = self
            .conversations
            .get_mut(conversation_id)
            .and_then(|c| c.transfer.take())
        else {
            return;
        };
        self.release(conversation_id, &pending.from, now, out);
        let conv = self.conversations.get_mut(conversation_id).expect("open");
        conv.rec.transfers += 1;
        if let TransferTarget::Queue(q) = &pending.to {
            conv.rec.queue = q.clone();
            let queue = &self.queues[q].settings;
            conv.base = routing::merge(&queue.skills, &conv.rec.skills);
            conv.need = conv.base.clone();
            conv.step = 0;
            conv.class = None;
        }
        out.push(Effect::Notify {
            to: Participant::Agent(pending.from),
            notice: Notice::Transferred {
                conversation_id: conversation_id.clone(),
                to: pending.to,
                warm: true,
            },
        });
    }

    /// The agent no longer holds the conversation (no wrap-up: it goes on elsewhere).
    pub(super) fn release(
        &mut self,
        conversation_id: &Id,
        agent_id: &Id,
        now: Millis,
        out: &mut Vec<Effect>,
    ) {
        let channel = self.conversations[conversation_id].rec.channel;
        if let Some(agent) = self.agents.get_mut(agent_id) {
            agent.conversations.retain(|c| c != conversation_id);
            let i = routing::channel_index(channel);
            agent.slot.load[i] = agent.slot.load[i].saturating_sub(1);
        }
        out.push(Effect::Persist(Record::AssignmentEnded {
            conversation_id: conversation_id.clone(),
            agent_id: agent_id.clone(),
            at: now,
        }));
        self.routing_dirty = true;
    }

    /// A system line in the transcript, so the customer knows what is happening.
    fn tell_customer(
        &mut self,
        conversation_id: &Id,
        from: &Id,
        to: &TransferTarget,
        now: Millis,
        out: &mut Vec<Effect>,
    ) {
        let from_name = self
            .agents
            .get(from)
            .map_or_else(|| from.to_string(), |a| a.display_name.to_string());
        let to_name = match to {
            TransferTarget::Queue(q) => format!("the {q} team"),
            TransferTarget::Agent(a) => self
                .agents
                .get(a)
                .map_or_else(|| a.to_string(), |a| a.display_name.to_string()),
        };
        let text = format!(
            "{from_name} passed your conversation to {to_name}, who will see everything said so far."
        );
        self.threads.system_line(conversation_id, text, now, out);
    }
}
