//! Routing decisions: who gets an offer for a waiting conversation (through the
//! candidate pools, checked against a scan in tests), offers made, declined, missed
//! and withdrawn.

use std::cmp::Reverse;
use std::sync::Arc;

use super::line::{Lane, WaitKey};
use super::{Conversation, Offer, Switchboard, Timer, closed_until, ruled_out, wait_key};
use crate::core::io::{Effect, Notice, OfferView, RevokeReason, TransferTarget};
use crate::core::model::{
    AgentState, Channel, ConversationState, Id, Millis, Participant, Record, Text,
};
use crate::core::pools::ClassKey;
use crate::core::routing::{self, Need, Reason, channel_index};

impl Switchboard {
    /// The agent to offer a waiting conversation to now, and why; `None` to let it
    /// wait. Candidates come from the pools (an index); `choose_by_scan` decides the
    /// same by scanning every agent, and `check_invariants` compares the two.
    pub(super) fn choose(&mut self, conversation_id: &Id, now: Millis) -> Option<(Id, Reason)> {
        if let Some(decided) = self.first_choice(conversation_id, now) {
            return decided;
        }
        let vxc = self.settings.voice_excludes_chat;
        let class = match self.conversations[conversation_id].class {
            Some(class) => class,
            None => {
                let key = self.class_key(conversation_id);
                let class = self.pools.class(key, vxc);
                if let Some(conv) = self.conversations.get_mut(conversation_id) {
                    conv.class = Some(class);
                }
                class
            }
        };
        let conv = &self.conversations[conversation_id];
        let last = self.queues[&conv.rec.queue].last_offered.as_ref();
        // Agents this customer rated poorly only when nobody else qualifies.
        let agent = self
            .pools
            .pick(class, last, |a| ruled_out(conv, a, now, true))
            .or_else(|| {
                self.pools
                    .pick(class, last, |a| ruled_out(conv, a, now, false))
            })?;
        let reason = self.reason(conv, &agent);
        Some((agent, reason))
    }

    /// In tests, every decision from the pools is checked against a scan of every agent.
    pub(super) fn choose_checked(
        &mut self,
        conversation_id: &Id,
        now: Millis,
    ) -> Option<(Id, Reason)> {
        #[cfg(test)]
        let scanned = self.choose_by_scan(conversation_id, now);
        let chosen = self.choose(conversation_id, now);
        #[cfg(test)]
        assert_eq!(
            chosen, scanned,
            "pools and a scan disagree for {conversation_id}"
        );
        chosen
    }

    /// `choose`, by scanning every agent (the reference for the pools).
    #[cfg(test)]
    pub(super) fn choose_by_scan(&self, conversation_id: &Id, now: Millis) -> Option<(Id, Reason)> {
        if let Some(decided) = self.first_choice(conversation_id, now) {
            return decided;
        }
        let key = self.class_key(conversation_id);
        let (need, widened) = key.need();
        let need = Need {
            widened: &widened,
            ..need
        };
        let conv = &self.conversations[conversation_id];
        let queue = &self.queues[&conv.rec.queue];
        let vxc = self.settings.voice_excludes_chat;
        let pick = |avoid: bool| {
            routing::pick(
                self.agents.values().map(|a| &a.slot),
                &need,
                queue.settings.strategy,
                vxc,
                queue.last_offered.as_ref(),
                |a| ruled_out(conv, a, now, avoid),
            )
        };
        let (agent, _) = pick(true).or_else(|| pick(false))?;
        Some((agent.id.clone(), self.reason(conv, &agent.id)))
    }

    pub(super) fn reason(&self, conv: &Conversation, agent: &Id) -> Reason {
        if conv.handoff.is_some() {
            Reason::Transfer
        } else if self
            .agents
            .get(agent)
            .is_some_and(|a| routing::qualified(&a.slot.skills, &conv.base))
        {
            Reason::Skill
        } else {
            Reason::Expanded
        }
    }

    /// Decisions made before looking for candidates: a closed queue waits; the
    /// customer's last agent is waited for during the affinity wait; a cold transfer
    /// to a named agent goes to them if they can take it. `None`: look for candidates.
    pub(super) fn first_choice(
        &self,
        conversation_id: &Id,
        now: Millis,
    ) -> Option<Option<(Id, Reason)>> {
        let conv = &self.conversations[conversation_id];
        let queue = &self.queues[&conv.rec.queue];
        if closed_until(&queue.settings, now).is_some() {
            return Some(None);
        }
        let vxc = self.settings.voice_excludes_chat;
        if let Some(last) = &conv.history.last_agent
            && conv.handoff.is_none()
            && now < conv.rec.entered_at + queue.settings.affinity_wait_ms
            && !ruled_out(conv, last, now, false)
            && let Some(agent) = self.agents.get(last)
            && agent.slot.online
            && matches!(agent.slot.state, AgentState::Available | AgentState::WrapUp)
            // Never wait for an agent who cannot take this channel at all.
            && agent.slot.capacity[channel_index(conv.rec.channel)] > 0
        {
            let key = self.class_key(conversation_id);
            let (need, widened) = key.need();
            let need = Need {
                widened: &widened,
                ..need
            };
            if agent.slot.qualifies(&need).is_some() {
                return Some(
                    agent
                        .slot
                        .can_take(conv.rec.channel, vxc)
                        .then(|| (last.clone(), Reason::History)),
                );
            }
        }
        if let Some(target) = conv.handoff.as_ref().and_then(|h| h.agent.as_ref())
            && !ruled_out(conv, target, now, false)
            && self
                .agents
                .get(target)
                .is_some_and(|a| a.slot.can_take(conv.rec.channel, vxc))
        {
            return Some(Some((target.clone(), Reason::Transfer)));
        }
        None
    }

    /// The class of agents a waiting conversation accepts now.
    pub(super) fn class_key(&self, conversation_id: &Id) -> ClassKey {
        let conv = &self.conversations[conversation_id];
        let queue = &self.queues[&conv.rec.queue];
        let widened = queue.settings.steps[..conv.step.min(queue.settings.steps.len())]
            .iter()
            .flat_map(|step| &step.widen_to)
            .filter_map(|q| self.queues.get(q))
            .map(|q| q.settings.skills.clone())
            .collect();
        ClassKey {
            channel: conv.rec.channel,
            original: conv.base.clone(),
            current: conv.need.clone(),
            widened,
            language: conv
                .rec
                .language
                .clone()
                .or_else(|| queue.settings.language.clone()),
            strategy: queue.settings.strategy,
            rating_queue: self
                .settings
                .prefer_satisfied
                .then(|| conv.rec.queue.clone()),
        }
    }

    /// Takes an offer back; the conversation waits again in its old place.
    /// `declined`: the agent said no (or did not answer), so skip them for a while.
    /// Persists that an agent let an offer go (rejected, or missed when `missed`).
    pub(super) fn record_decline(
        &self,
        offer_id: &Id,
        missed: bool,
        reason: Option<Text>,
        now: Millis,
        out: &mut Vec<Effect>,
    ) {
        let Some(offer) = self.offers.get(offer_id) else {
            return;
        };
        let Some(conv) = self.conversations.get(&offer.conversation_id) else {
            return;
        };
        out.push(Effect::Persist(Record::OfferDeclined {
            offer_id: offer_id.clone(),
            conversation_id: offer.conversation_id.clone(),
            agent_id: offer.agent_id.clone(),
            queue: conv.rec.queue.clone(),
            missed,
            reason,
            at: now,
        }));
    }

    pub(super) fn withdraw_offer(
        &mut self,
        offer_id: &Id,
        tell: Option<RevokeReason>,
        now: Millis,
        declined: bool,
        out: &mut Vec<Effect>,
    ) {
        let Some(offer) = self.offers.remove(offer_id) else {
            return;
        };
        if let Some(agent) = self.agents.get_mut(&offer.agent_id) {
            agent.offers.retain(|o| o != offer_id);
            let i = channel_index(offer.channel);
            agent.slot.load[i] = agent.slot.load[i].saturating_sub(1);
        }
        if let Some(reason) = tell {
            out.push(Effect::Notify {
                to: Participant::Agent(offer.agent_id.clone()),
                notice: Notice::OfferRevoked {
                    offer_id: offer_id.clone(),
                    conversation_id: offer.conversation_id.clone(),
                    reason,
                },
            });
        }
        // The agent has room again, whatever becomes of the conversation.
        self.routing_dirty = true;
        if offer.warm {
            if let Some(conv) = self.conversations.get_mut(&offer.conversation_id) {
                conv.offer = None;
            }
            self.continue_warm(&offer.conversation_id, now, out);
            return;
        }
        let mut overdue = false;
        let mut back = false;
        if let Some(conv) = self.conversations.get_mut(&offer.conversation_id) {
            conv.offer = None;
            if conv.rec.state == ConversationState::Offered {
                conv.rec.state = ConversationState::Queued;
                back = true;
                if declined {
                    let until = now + self.settings.reoffer_delay_ms;
                    conv.declined.push((offer.agent_id.clone(), until));
                    self.timers
                        .push(Reverse((until, Timer::Reroute(conv.rec.id.clone()))));
                }
                // Its wait ran out while it was on offer (the overflow timer found it
                // offered and did nothing): it overflows now, before any new offer.
                overdue = self.queues.get(&conv.rec.queue).is_some_and(|q| {
                    q.settings.overflow_to.is_some()
                        && q.settings
                            .max_wait_ms
                            .is_some_and(|max_wait| conv.rec.entered_at + max_wait <= now)
                });
            }
        }
        if back {
            // Back to its place in line (its class may have changed meanwhile).
            let conv = &self.conversations[&offer.conversation_id];
            let key = wait_key(conv);
            let lane = self.lane(&offer.conversation_id);
            self.waiting
                .insert(key, offer.conversation_id.clone(), lane);
        }
        if overdue {
            self.overflow(&offer.conversation_id, now, out);
        }
        self.routing_dirty = true;
    }

    /// Whether some agent has room for a conversation on some channel.
    pub(super) fn any_free(&self, vxc: bool) -> bool {
        self.agents
            .values()
            .any(|a| a.slot.can_take(Channel::Chat, vxc) || a.slot.can_take(Channel::Voice, vxc))
    }

    /// Offers waiting conversations to agents, in priority then arrival order, and
    /// tells waiting customers their place.
    pub(super) fn route(&mut self, now: Millis, out: &mut Vec<Effect>) {
        if self.routing_dirty {
            self.routing_dirty = false;
            self.offer_pass(now, out);
            #[cfg(test)]
            self.check_work_conserving(now);
        }
        self.tell_places(now, out);
    }

    /// One routing pass. It walks the line in order, but only the lanes some agent
    /// could take now (a ready agent in the lane's class, the queue open): a long line
    /// of conversations that nobody free qualifies for costs nothing. Skipping the
    /// other lanes changes no decision: a conversation whose class has no ready agent
    /// gets none (its last agent, if free, is in that class too), except a cold
    /// transfer to a named agent, whose lane is always walked.
    pub(super) fn offer_pass(&mut self, now: Millis, out: &mut Vec<Effect>) {
        // A closed queue may hold conversations that were waiting when it closed (those
        // that arrive while it is closed have their own timer): route at the opening.
        let mut closed: Vec<Id> = Vec::new();
        for queue in self.queues.values_mut() {
            if let Some(opens) = closed_until(&queue.settings, now) {
                closed.push(queue.settings.name.clone());
                if queue.opening_armed != Some(opens) {
                    queue.opening_armed = Some(opens);
                    let timer = Timer::Opening(queue.settings.name.clone());
                    self.timers.push(Reverse((opens, timer)));
                }
            }
        }
        let vxc = self.settings.voice_excludes_chat;
        if !self.any_free(vxc) {
            return;
        }
        self.pools.sync(self.agents.values().map(|a| &a.slot), vxc);
        // (lane, the last key looked at in it)
        let mut lanes: Vec<(Lane, Option<WaitKey>)> = self
            .waiting
            .lanes()
            .filter(|lane| !closed.contains(&lane.queue))
            .filter(|lane| lane.class.is_none_or(|c| self.pools.has_ready(c)))
            .map(|lane| (lane.clone(), None))
            .collect();
        loop {
            // The first in line across the lanes still worth walking.
            let mut first: Option<(usize, WaitKey)> = None;
            for (i, (lane, after)) in lanes.iter().enumerate() {
                if let Some(key) = self.waiting.next_in(lane, *after)
                    && first.is_none_or(|(_, k)| key < k)
                {
                    first = Some((i, key));
                }
            }
            let Some((i, key)) = first else {
                break;
            };
            lanes[i].1 = Some(key);
            let conversation_id = self.waiting.get(&key).expect("in a lane").clone();
            let Some((agent_id, reason)) = self.choose_checked(&conversation_id, now) else {
                continue;
            };
            self.waiting.remove(&key);
            self.make_offer(&conversation_id, agent_id.clone(), reason, now, out);
            self.pools.index(&self.agents[&agent_id].slot, vxc);
            // Once no agent has room for anything, the rest of the line waits.
            if !self.any_free(vxc) {
                break;
            }
            lanes.retain(|(lane, _)| lane.class.is_none_or(|c| self.pools.has_ready(c)));
        }
    }

    /// After a pass, no conversation left waiting could have been offered to anyone
    /// (decided by scanning every agent): the lanes skipped nothing they should not.
    #[cfg(test)]
    pub(super) fn check_work_conserving(&self, now: Millis) {
        for id in self.waiting.ids() {
            assert_eq!(
                self.choose_by_scan(id, now),
                None,
                "{id} was left waiting though an agent could take it"
            );
        }
    }

    pub(super) fn make_offer(
        &mut self,
        conversation_id: &Id,
        agent_id: Id,
        reason: Reason,
        now: Millis,
        out: &mut Vec<Effect>,
    ) {
        let offer_id: Id = format!("{}-{}", self.offer_prefix, self.next_offer).into();
        self.next_offer += 1;
        let conv = self
            .conversations
            .get_mut(conversation_id)
            .expect("waiting is open");
        // A warm transfer keeps the conversation active with its agent meanwhile, and
        // is offered on behalf of its target queue.
        let warm = conv.transfer.is_some();
        let queue_name = match conv.transfer.as_ref().map(|t| &t.to) {
            Some(TransferTarget::Queue(q)) => q.clone(),
            _ => conv.rec.queue.clone(),
        };
        let note = conv
            .transfer
            .as_ref()
            .map(|t| t.note.clone())
            .or_else(|| conv.handoff.as_ref().map(|h| h.note.clone()))
            .flatten();
        let queue = self.queues.get_mut(&queue_name).expect("known queue");
        queue.last_offered = Some(agent_id.clone());
        let timeout = queue.settings.offer_timeout_ms;
        if !warm {
            conv.rec.state = ConversationState::Offered;
        }
        conv.offer = Some(offer_id.clone());
        let agent = self.agents.get_mut(&agent_id).expect("picked from agents");
        agent.offers.push(offer_id.clone());
        agent.slot.load[channel_index(conv.rec.channel)] += 1;
        self.offers.insert(
            offer_id.clone(),
            Offer {
                conversation_id: conversation_id.clone(),
                agent_id: agent_id.clone(),
                channel: conv.rec.channel,
                warm,
            },
        );
        self.timers.push(Reverse((
            now + timeout,
            Timer::OfferExpiry(offer_id.clone()),
        )));
        out.push(Effect::Notify {
            to: Participant::Agent(agent_id),
            notice: Notice::Offer(Arc::new(OfferView {
                offer_id,
                conversation_id: conversation_id.clone(),
                channel: conv.rec.channel,
                queue: queue_name,
                expires_in_ms: timeout,
                reason,
                customer_id: conv.rec.customer_id.clone(),
                customer_name: conv.customer_name.clone(),
                previous_conversations: conv.history.previous_conversations,
                note,
                first_words: self
                    .threads
                    .get(conversation_id)
                    .and_then(|t| t.first_words.clone()),
            })),
        });
    }
}
