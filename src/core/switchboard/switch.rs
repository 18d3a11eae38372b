//! One conversation across channels. A customer moves from chat to a call (or back)
//! without starting over: the transcript, attributes and agent carry over. If the
//! agent has no room on the new channel, the conversation waits ahead of its queue
//! with everything carried (their agent preferred if they free up), and the agent is
//! told. Also `rtc`: browser-call signalling relayed between the two parties only.

use super::{Switchboard, ack, reply, wait_key};
use crate::core::io::{Effect, Notice, Refusal, Reply, ReqId, RevokeReason};
use crate::core::model::{
    Channel, ConnId, ConversationState, Id, Millis, Participant, Record, Role, Text,
};
use crate::core::routing::channel_index;

impl Switchboard {
    /// `customer`: the customer asking (`None`: the shell, for a phone call that
    /// attaches to the conversation or leaves it).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn switch(
        &mut self,
        conn: ConnId,
        req: ReqId,
        customer: Option<Id>,
        conversation_id: Id,
        channel: Channel,
        now: Millis,
        out: &mut Vec<Effect>,
    ) {
        if let Err(refusal) = self.check_switch(customer.as_ref(), &conversation_id) {
            return reply(out, conn, req, Reply::Refused(refusal));
        }
        reply(out, conn, req, ack(Some(conversation_id.clone()), None));
        let conv = &self.conversations[&conversation_id];
        if conv.rec.channel == channel {
            return;
        }
        let state = conv.rec.state;
        let offer = conv.offer.clone();
        let agent = conv.rec.agent_id.clone();
        match state {
            ConversationState::Offered => {
                // The agent was offered the old channel: offer it again as it is now.
                if let Some(offer_id) = offer {
                    self.withdraw_offer(&offer_id, Some(RevokeReason::Withdrawn), now, false, out);
                }
                self.set_channel_waiting(&conversation_id, channel);
            }
            ConversationState::Queued => self.set_channel_waiting(&conversation_id, channel),
            ConversationState::Active => {
                let Some(agent_id) = agent else { return };
                let room = self.agents.get(&agent_id).is_some_and(|a| {
                    let i = channel_index(channel);
                    a.slot.load[i] < a.slot.capacity[i]
                });
                if room {
                    self.move_load(&agent_id, channel);
                    if let Some(conv) = self.conversations.get_mut(&conversation_id) {
                        conv.rec.channel = channel;
                    }
                } else {
                    self.reroute_for_channel(&conversation_id, &agent_id, channel, now, out);
                }
            }
            ConversationState::Closed => return,
        }
        let conv = &self.conversations[&conversation_id];
        out.push(Effect::Persist(Record::Conversation(std::sync::Arc::new(
            conv.rec.clone(),
        ))));
        let kept = conv.rec.state == ConversationState::Active;
        let customer_id = conv.rec.customer_id.clone();
        let text = match channel {
            Channel::Voice => "The conversation moved to a call.",
            Channel::Chat => "The conversation moved back to chat.",
        };
        self.threads
            .system_line(&conversation_id, text.to_owned(), now, out);
        let notice = Notice::Switched {
            conversation_id: conversation_id.clone(),
            channel,
            agent_kept: kept,
        };
        out.push(Effect::Notify {
            to: Participant::Customer(customer_id),
            notice: notice.clone(),
        });
        if state == ConversationState::Active
            && let Some(agent_id) = self.conversations[&conversation_id]
                .rec
                .agent_id
                .clone()
                .or(self.conversations[&conversation_id]
                    .history
                    .last_agent
                    .clone())
        {
            out.push(Effect::Notify {
                to: Participant::Agent(agent_id),
                notice,
            });
        }
        self.routing_dirty = true;
    }

    fn check_switch(&self, customer: Option<&Id>, conversation_id: &Id) -> Result<(), Refusal> {
        if let Some(customer) = customer {
            self.owned_by_customer(conversation_id, customer)?;
        }
        let Some(conv) = self.conversations.get(conversation_id) else {
            return Err(Refusal::not_found(format!(
                "there is no open conversation `{conversation_id}`"
            )));
        };
        if conv.transfer.is_some() {
            return Err(Refusal::conflict(
                "a transfer of this conversation is under way; switch once it is done",
            ));
        }
        Ok(())
    }

    /// A waiting conversation changes channel in place: same place in line, the
    /// candidates of the new channel.
    fn set_channel_waiting(&mut self, conversation_id: &Id, channel: Channel) {
        if let Some(conv) = self.conversations.get_mut(conversation_id) {
            conv.rec.channel = channel;
            conv.class = None;
        }
        self.relane(conversation_id);
    }

    fn move_load(&mut self, agent_id: &Id, to: Channel) {
        if let Some(agent) = self.agents.get_mut(agent_id) {
            let (from_i, to_i) = match to {
                Channel::Voice => (channel_index(Channel::Chat), channel_index(Channel::Voice)),
                Channel::Chat => (channel_index(Channel::Voice), channel_index(Channel::Chat)),
            };
            agent.slot.load[from_i] = agent.slot.load[from_i].saturating_sub(1);
            agent.slot.load[to_i] += 1;
        }
    }

    /// The agent has no room on the new channel: the conversation waits ahead of its
    /// queue, its agent preferred (for the queue's affinity wait) if they free up.
    fn reroute_for_channel(
        &mut self,
        conversation_id: &Id,
        agent_id: &Id,
        channel: Channel,
        now: Millis,
        out: &mut Vec<Effect>,
    ) {
        self.release(conversation_id, agent_id, now, out);
        let Some(conv) = self.conversations.get_mut(conversation_id) else {
            return;
        };
        let priority = self
            .queues
            .get(&conv.rec.queue)
            .map_or(conv.rec.priority, |q| q.settings.priority.saturating_add(1));
        conv.rec.channel = channel;
        conv.rec.priority = priority;
        conv.rec.state = ConversationState::Queued;
        conv.rec.agent_id = None;
        conv.rec.entered_at = now;
        conv.class = None;
        conv.queued_sent = None;
        conv.history.last_agent = Some(agent_id.clone());
        conv.history.poorly_rated.retain(|a| a != agent_id);
        conv.assigned_at = None;
        debug_assert!(self.waiting.get(&wait_key(conv)).is_none());
        self.wait(conversation_id, now);
    }

    /// `rtc`: relays browser-call signalling to the other party of the conversation.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn rtc(
        &mut self,
        conn: ConnId,
        req: ReqId,
        from: Participant,
        conversation_id: Id,
        payload: Text,
        out: &mut Vec<Effect>,
    ) {
        let Some(conv) = self.conversations.get(&conversation_id) else {
            let refusal =
                Refusal::not_found(format!("there is no open conversation `{conversation_id}`"));
            return reply(out, conn, req, Reply::Refused(refusal));
        };
        let active_agent = (conv.rec.state == ConversationState::Active)
            .then(|| conv.rec.agent_id.clone())
            .flatten();
        let (role, to) = match (&from, active_agent) {
            (Participant::Customer(c), Some(agent)) if *c == conv.rec.customer_id => {
                (Role::Customer, Participant::Agent(agent))
            }
            (Participant::Agent(a), Some(agent)) if *a == agent => (
                Role::Agent,
                Participant::Customer(conv.rec.customer_id.clone()),
            ),
            (Participant::Customer(c), None) if *c == conv.rec.customer_id => {
                let refusal = Refusal::conflict("no agent is on this conversation yet");
                return reply(out, conn, req, Reply::Refused(refusal));
            }
            _ => {
                let refusal =
                    Refusal::forbidden(format!("conversation `{conversation_id}` is not yours"));
                return reply(out, conn, req, Reply::Refused(refusal));
            }
        };
        out.push(Effect::Notify {
            to,
            notice: Notice::Rtc {
                conversation_id: conversation_id.clone(),
                from: role,
                payload,
            },
        });
        if req.is_some() {
            reply(out, conn, req, ack(Some(conversation_id), None));
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::core::io::{
        AgentSettings, CoreSettings, Effect, Input, Notice, QueueSettings, Reply, StartRequest,
    };
    use crate::core::model::{AgentState, Channel, ConnId, CustomerHistory, Participant};
    use crate::core::switchboard::Switchboard;

    fn agent(id: &str, chat: u32, voice: u32) -> AgentSettings {
        AgentSettings {
            id: id.into(),
            display_name: id.into(),
            skills: Default::default(),
            languages: Vec::new(),
            capacity_chat: chat,
            capacity_voice: voice,
        }
    }

    /// A switchboard where agent `a` (given capacities) holds conversation `c1`.
    fn held(chat: u32, voice: u32) -> (Switchboard, Vec<Effect>) {
        let settings = CoreSettings {
            queues: vec![QueueSettings::named("q")],
            agents: vec![agent("a", chat, voice), agent("b", 0, 1)],
            agent_grace_ms: 1000,
            max_missed_offers: 3,
            reoffer_delay_ms: 1000,
            queued_update_interval_ms: 1000,
            dedupe_window: 8,
            voice_excludes_chat: true,
            coaching: Default::default(),
            prefer_satisfied: false,
        };
        let mut sb = Switchboard::new(settings, 1);
        let mut out = Vec::new();
        for (n, id) in ["a", "b"].into_iter().enumerate() {
            sb.handle(
                Input::AgentConnected {
                    conn: ConnId(10 + n as u64),
                    agent_id: id.into(),
                },
                0,
                &mut out,
            );
        }
        sb.handle(
            Input::SetStatus {
                conn: ConnId(10),
                req: None,
                agent_id: "a".into(),
                available: true,
            },
            0,
            &mut out,
        );
        sb.handle(
            Input::Start(Box::new(StartRequest {
                conn: ConnId(1),
                req: None,
                customer_id: "cust".into(),
                customer_name: "Cust".into(),
                history: CustomerHistory::default(),
                conversation_id: "c1".into(),
                queue: "q".into(),
                channel: Channel::Chat,
                language: None,
                skills: Default::default(),
                attributes: "{}".into(),
                context: Vec::new(),
                repeat_of: None,
                text: None,
            })),
            1,
            &mut out,
        );
        let offer = out
            .iter()
            .find_map(|e| match e {
                Effect::Notify {
                    notice: Notice::Offer(o),
                    ..
                } => Some(o.offer_id.clone()),
                _ => None,
            })
            .expect("a is offered c1");
        sb.handle(
            Input::Accept {
                conn: ConnId(10),
                req: None,
                agent_id: "a".into(),
                offer_id: offer,
            },
            2,
            &mut out,
        );
        sb.check_invariants().unwrap();
        out.clear();
        (sb, out)
    }

    fn switch(sb: &mut Switchboard, customer: Option<&str>, channel: Channel) -> Vec<Effect> {
        let mut out = Vec::new();
        sb.handle(
            Input::Switch {
                conn: ConnId(1),
                req: Some("s".into()),
                customer: customer.map(Into::into),
                conversation_id: "c1".into(),
                channel,
            },
            3,
            &mut out,
        );
        sb.check_invariants().unwrap();
        out
    }

    fn switched_to(out: &[Effect], who: Participant) -> Option<bool> {
        out.iter().find_map(|e| match e {
            Effect::Notify {
                to,
                notice: Notice::Switched { agent_kept, .. },
            } if *to == who => Some(*agent_kept),
            _ => None,
        })
    }

    #[test]
    fn a_switch_keeps_the_agent_who_has_room_and_moves_their_load() {
        let (mut sb, _) = held(1, 1);
        let out = switch(&mut sb, Some("cust"), Channel::Voice);
        assert_eq!(
            switched_to(&out, Participant::Agent("a".into())),
            Some(true)
        );
        assert_eq!(
            switched_to(&out, Participant::Customer("cust".into())),
            Some(true)
        );
        // a's chat slot is free again: the invariants check load per channel.
        let out = switch(&mut sb, None, Channel::Chat);
        assert_eq!(
            switched_to(&out, Participant::Agent("a".into())),
            Some(true)
        );
    }

    #[test]
    fn a_switch_without_room_waits_ahead_for_an_agent_who_has_it() {
        let (mut sb, _) = held(1, 0);
        let out = switch(&mut sb, Some("cust"), Channel::Voice);
        assert_eq!(
            switched_to(&out, Participant::Agent("a".into())),
            Some(false)
        );
        // b (voice) is away: the conversation waits; when b is available, b gets it.
        assert_eq!(sb.waiting_len(), 1);
        let mut out = Vec::new();
        sb.handle(
            Input::SetStatus {
                conn: ConnId(11),
                req: None,
                agent_id: "b".into(),
                available: true,
            },
            4,
            &mut out,
        );
        sb.check_invariants().unwrap();
        let offered_to_b = out.iter().any(|e| {
            matches!(e, Effect::Notify { to: Participant::Agent(b), notice: Notice::Offer(o) }
                if &**b == "b" && o.channel == Channel::Voice)
        });
        assert!(offered_to_b, "{out:?}");
        assert_eq!(sb.agent_state("a"), Some(AgentState::Available));
    }

    #[test]
    fn only_the_customer_may_switch_and_only_an_open_conversation() {
        let (mut sb, _) = held(1, 1);
        let out = switch(&mut sb, Some("someone-else"), Channel::Voice);
        assert!(
            out.iter().any(|e| matches!(
                e,
                Effect::Reply {
                    reply: Reply::Refused(_),
                    ..
                }
            )),
            "{out:?}"
        );
        assert_eq!(switched_to(&out, Participant::Agent("a".into())), None);
    }
}
