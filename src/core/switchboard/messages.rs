//! What happens inside a conversation once it is open: messages (de-duplicated by
//! client id, coached, their mood read), typing, and the transcript's appends with
//! their `seq`. The part of the switchboard issue 21 moves to the conversation plane.

use std::sync::Arc;

use super::{Switchboard, ack, reply};
use crate::core::io::{Effect, Notice, Reply, ReqId};
use crate::core::model::{
    Author, ConnId, ConversationState, Event, EventBody, Id, Millis, Participant, Record, Role,
    Text,
};
use crate::core::signals::coaching::Flag;

impl Switchboard {
    #[allow(clippy::too_many_arguments)]
    pub(super) fn post(
        &mut self,
        conn: ConnId,
        req: ReqId,
        from: Participant,
        conversation_id: Id,
        text: Text,
        client_msg_id: Option<Id>,
        now: Millis,
        out: &mut Vec<Effect>,
    ) {
        let author = match &from {
            Participant::Customer(customer_id) => {
                if let Err(refusal) = self.owned_by_customer(&conversation_id, customer_id) {
                    return reply(out, conn, req, Reply::Refused(refusal));
                }
                let conv = &self.conversations[&conversation_id];
                Author {
                    role: Role::Customer,
                    id: customer_id.clone(),
                    display_name: conv.customer_name.clone(),
                }
            }
            Participant::Agent(agent_id) => {
                if let Err(refusal) = self.held_by_agent(&conversation_id, agent_id) {
                    return reply(out, conn, req, Reply::Refused(refusal));
                }
                Author {
                    role: Role::Agent,
                    id: agent_id.clone(),
                    display_name: self.agents[agent_id].display_name.clone(),
                }
            }
        };
        if let Some(client_id) = &client_msg_id {
            let seen = self.conversations[&conversation_id]
                .recent
                .find(&author.id, client_id);
            if let Some(seq) = seen {
                return reply(out, conn, req, ack(Some(conversation_id), Some(seq)));
            }
        }
        // The ack goes out before the event, so the sending connection's cursor has
        // moved past its own message when the event reaches it: no echo.
        let seq = self.conversations[&conversation_id].last_seq + 1;
        reply(
            out,
            conn,
            req,
            ack(Some(conversation_id.clone()), Some(seq)),
        );
        // Coaching: what the agent's words say, while it can still change the outcome;
        // and effort: the customer repeating, or the agent asking for, what we knew.
        let conv = self
            .conversations
            .get_mut(&conversation_id)
            .expect("checked");
        let mut flags = Vec::new();
        if author.role == Role::Agent {
            flags = self.settings.coaching.flags(&text);
            if let Some(name) = conv.tracker.agent_said(now, &text) {
                flags.push(Flag {
                    code: "asked_known".into(),
                    hint: format!(
                        "You already have the {}: it is in the conversation's context.",
                        name.replace('_', " ")
                    )
                    .into(),
                    positive: false,
                });
            }
            let negative = flags.iter().filter(|f| !f.positive).count();
            let positive = flags.len() - negative;
            conv.tracker.flagged(negative as u32, positive as u32);
        }
        // The customer's mood reaches the agent when it says something: a neutral
        // message with no cue stays quiet. It is kept for whoever accepts later (the
        // customer may have said it while waiting).
        let mood = (author.role == Role::Customer)
            .then(|| conv.tracker.mood(&text))
            .filter(|m| !m.is_quiet());
        if let Some(mood) = &mood {
            conv.mood = Some((seq, mood.clone()));
        }
        if author.role == Role::Customer && conv.tracker.customer_said(now, &text) {
            flags.push(Flag {
                code: "customer_repeated".into(),
                hint: "The customer repeated something we already knew: use the context, don't ask again."
                    .into(),
                positive: false,
            });
        }
        let coached = conv.rec.agent_id.clone();
        let appended = self.append(
            &conversation_id,
            EventBody::Message {
                author: author.clone(),
                text,
                client_msg_id: client_msg_id.clone(),
            },
            now,
            out,
        );
        debug_assert_eq!(appended, seq);
        if let (Some(agent_id), Some(mood)) = (&coached, mood) {
            out.push(Effect::Notify {
                to: Participant::Agent(agent_id.clone()),
                notice: Notice::Mood {
                    conversation_id: conversation_id.clone(),
                    seq,
                    mood,
                },
            });
        }
        if let Some(agent_id) = coached.filter(|_| !flags.is_empty()) {
            out.push(Effect::Persist(Record::CoachingFlags {
                conversation_id: conversation_id.clone(),
                agent_id: agent_id.clone(),
                seq,
                codes: flags.iter().map(|f| f.code.clone()).collect(),
                at: now,
            }));
            out.push(Effect::Notify {
                to: Participant::Agent(agent_id),
                notice: Notice::Coaching {
                    conversation_id: conversation_id.clone(),
                    seq,
                    flags,
                },
            });
        }
        if let Some(client_id) = client_msg_id {
            let window = self.settings.dedupe_window;
            let conv = self
                .conversations
                .get_mut(&conversation_id)
                .expect("checked");
            conv.recent.push(author.id, client_id, seq, window);
        }
    }

    pub(super) fn typing(
        &mut self,
        from: Participant,
        conversation_id: Id,
        on: bool,
        out: &mut Vec<Effect>,
    ) {
        let Some(conv) = self.conversations.get(&conversation_id) else {
            return;
        };
        let (role, to) = match &from {
            Participant::Customer(c) if *c == conv.rec.customer_id => match &conv.rec.agent_id {
                Some(agent) if conv.rec.state == ConversationState::Active => {
                    (Role::Customer, Participant::Agent(agent.clone()))
                }
                _ => return,
            },
            Participant::Agent(a)
                if conv.rec.agent_id.as_ref() == Some(a)
                    && conv.rec.state == ConversationState::Active =>
            {
                (
                    Role::Agent,
                    Participant::Customer(conv.rec.customer_id.clone()),
                )
            }
            // A member while nobody is there to tell: nothing to do.
            Participant::Customer(c) if *c == conv.rec.customer_id => return,
            Participant::Agent(a) if conv.rec.agent_id.as_ref() == Some(a) => return,
            // Not theirs: dropped (typing has no answer), and audited.
            _ => {
                out.push(Effect::Denied {
                    by: from,
                    message: format!(
                        "typing about conversation {conversation_id}, which is not theirs"
                    ),
                });
                return;
            }
        };
        out.push(Effect::Notify {
            to,
            notice: Notice::Typing {
                conversation_id,
                role,
                on,
            },
        });
    }

    /// A system line in the transcript, for both sides to read.
    pub(super) fn system_line(
        &mut self,
        conversation_id: &Id,
        text: String,
        now: Millis,
        out: &mut Vec<Effect>,
    ) {
        let author = Author {
            role: Role::System,
            id: "warmline".into(),
            display_name: "Warmline".into(),
        };
        self.append(
            conversation_id,
            EventBody::Message {
                author,
                text: text.into(),
                client_msg_id: None,
            },
            now,
            out,
        );
    }

    /// Appends a transcript event: next `seq`, persisted, told to both sides.
    pub(super) fn append(
        &mut self,
        conversation_id: &Id,
        body: EventBody,
        now: Millis,
        out: &mut Vec<Effect>,
    ) -> u64 {
        let conv = self
            .conversations
            .get_mut(conversation_id)
            .expect("callers check the conversation is open");
        conv.last_seq += 1;
        if let EventBody::Message { author, text, .. } = &body
            && author.role == Role::Customer
            && conv.first_words.is_none()
        {
            conv.first_words = Some(text.clone());
        }
        let event = Arc::new(Event {
            conversation_id: conversation_id.clone(),
            seq: conv.last_seq,
            ts: now,
            body,
        });
        out.push(Effect::Persist(Record::Event(event.clone())));
        out.push(Effect::Notify {
            to: Participant::Customer(conv.rec.customer_id.clone()),
            notice: Notice::Event(event.clone()),
        });
        if let Some(agent) = &conv.rec.agent_id {
            out.push(Effect::Notify {
                to: Participant::Agent(agent.clone()),
                notice: Notice::Event(event),
            });
        }
        conv.last_seq
    }
}
