//! The conversation plane: what happens inside each open conversation once it exists.
//! Who may speak in it, its messages (de-duplicated by client id, coached, their mood
//! read), typing, and its transcript's appends with their `seq`; the signal tracker
//! that measures it.
//!
//! The routing plane (`switchboard`) decides who a conversation is with and tells this
//! plane through explicit calls: `open` (a conversation exists), `seat` (its agent and
//! whether they hold it now), `merge` (its customer became another), `append` (a
//! transcript event routing makes: `assigned`, `closed`, a system line) and `close`
//! (it ended: the tracker's summary goes back). Nothing here reads routing's state, so
//! a message is decided here alone (ARCHITECTURE.md, "two planes").

pub(crate) mod recent;

use std::collections::HashMap;
use std::sync::Arc;

use super::io::{Effect, Notice, Refusal, Reply, ReqId};
use super::model::{Author, ConnId, Event, EventBody, Id, Millis, Participant, Record, Role, Text};
use super::signals::coaching::{Coaching, Flag};
use super::signals::conversation::{Mood, Summary, Tracker};
use recent::RecentIds;

/// One open conversation, as this plane keeps it.
pub(crate) struct Thread {
    pub(crate) customer_id: Id,
    pub(crate) customer_name: Id,
    /// Its agent (id, display name): set from assignment until the close, kept while
    /// a transfer hands it over.
    pub(crate) agent: Option<(Id, Id)>,
    /// The agent holds it now (routing's `active`): they may write and type.
    pub(crate) active: bool,
    pub(crate) last_seq: u64,
    /// Client ids of its last messages, at most the de-duplication window.
    pub(crate) recent: RecentIds,
    /// Timing, transfers, effort and flags, as they happen.
    pub(crate) tracker: Tracker,
    /// The customer's latest mood that said something, with its message's seq: what an
    /// agent who accepts the conversation is told first.
    pub(crate) mood: Option<(u64, Mood)>,
    /// The customer's first message (since this core was built: a restored
    /// conversation gets the next one): offers show it, so an agent sees what the
    /// customer wants before accepting.
    pub(crate) first_words: Option<Text>,
}

/// Every open conversation's thread, and the settings messages need.
pub(crate) struct Conversations {
    threads: HashMap<Id, Thread>,
    coaching: Arc<Coaching>,
    dedupe_window: usize,
}

impl Conversations {
    pub(crate) fn new(coaching: Arc<Coaching>, dedupe_window: usize) -> Conversations {
        Conversations {
            threads: HashMap::new(),
            coaching,
            dedupe_window,
        }
    }

    pub(crate) fn reserve(&mut self, n: usize) {
        self.threads.reserve(n);
    }

    /// A conversation exists (started, restored, followed up): nobody holds it yet.
    pub(crate) fn open(&mut self, id: Id, customer_id: Id, customer_name: Id, tracker: Tracker) {
        self.threads.insert(
            id,
            Thread {
                customer_id,
                customer_name,
                agent: None,
                active: false,
                last_seq: 0,
                recent: RecentIds::default(),
                tracker,
                mood: None,
                first_words: None,
            },
        );
    }

    /// A restored conversation's transcript so far: its last `seq` and recent client ids.
    pub(crate) fn resume(&mut self, id: &Id, last_seq: u64, recent: Vec<(Id, Id, u64)>) {
        if let Some(t) = self.threads.get_mut(id) {
            t.last_seq = last_seq;
            t.recent = RecentIds::from_oldest(recent);
        }
    }

    /// Who the conversation is with now: its agent (with the name they write under)
    /// and whether they hold it.
    pub(crate) fn seat(&mut self, id: &Id, agent: Option<(Id, Id)>, active: bool) {
        if let Some(t) = self.threads.get_mut(id) {
            t.agent = agent;
            t.active = active;
        }
    }

    /// The conversation's customer became `into` (identities merged).
    pub(crate) fn merge(&mut self, id: &Id, into: &Id) {
        if let Some(t) = self.threads.get_mut(id) {
            t.customer_id = into.clone();
        }
    }

    /// The conversation ended: its thread goes, and what its tracker measured comes back.
    pub(crate) fn close(&mut self, id: &Id, now: Millis) -> Option<Summary> {
        self.threads.remove(id).map(|t| t.tracker.summary(now))
    }

    pub(crate) fn get(&self, id: &Id) -> Option<&Thread> {
        self.threads.get(id)
    }

    pub(crate) fn get_mut(&mut self, id: &Id) -> Option<&mut Thread> {
        self.threads.get_mut(id)
    }

    pub(crate) fn len(&self) -> usize {
        self.threads.len()
    }

    pub(crate) fn ids(&self) -> impl Iterator<Item = &Id> {
        self.threads.keys()
    }

    /// A message from a customer or an agent: checked, de-duplicated, acked with its
    /// `seq`, appended, and (from an agent) coached.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn post(
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
        let author = match self.may_write(&from, &conversation_id) {
            Ok(author) => author,
            Err(refusal) => return reply(out, conn, req, Reply::Refused(refusal)),
        };
        let thread = self.threads.get_mut(&conversation_id).expect("checked");
        if let Some(client_id) = &client_msg_id
            && let Some(seq) = thread.recent.find(&author.id, client_id)
        {
            return reply(out, conn, req, ack(Some(conversation_id), Some(seq)));
        }
        // The ack goes out before the event, so the sending connection's cursor has
        // moved past its own message when the event reaches it: no echo.
        let seq = thread.last_seq + 1;
        reply(
            out,
            conn,
            req,
            ack(Some(conversation_id.clone()), Some(seq)),
        );
        // Coaching: what the agent's words say, while it can still change the outcome;
        // and effort: the customer repeating, or the agent asking for, what we knew.
        let mut flags = Vec::new();
        if author.role == Role::Agent {
            flags = self.coaching.flags(&text);
            if let Some(name) = thread.tracker.agent_said(now, &text) {
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
            thread.tracker.flagged(negative as u32, positive as u32);
        }
        // The customer's mood reaches the agent when it says something: a neutral
        // message with no cue stays quiet. It is kept for whoever accepts later (the
        // customer may have said it while waiting).
        let mood = (author.role == Role::Customer)
            .then(|| thread.tracker.mood(&text))
            .filter(|m| !m.is_quiet());
        if let Some(mood) = &mood {
            thread.mood = Some((seq, mood.clone()));
        }
        if author.role == Role::Customer && thread.tracker.customer_said(now, &text) {
            flags.push(Flag {
                code: "customer_repeated".into(),
                hint: "The customer repeated something we already knew: use the context, don't ask again."
                    .into(),
                positive: false,
            });
        }
        let coached = thread.agent.as_ref().map(|(agent_id, _)| agent_id.clone());
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
            let window = self.dedupe_window;
            let thread = self.threads.get_mut(&conversation_id).expect("checked");
            thread.recent.push(author.id, client_id, seq, window);
        }
    }

    /// Who writes, if they may: the conversation's customer, or the agent holding it.
    fn may_write(&self, from: &Participant, conversation_id: &Id) -> Result<Author, Refusal> {
        let Some(thread) = self.threads.get(conversation_id) else {
            return Err(not_open(conversation_id));
        };
        match from {
            Participant::Customer(customer_id) if *customer_id == thread.customer_id => {
                Ok(Author {
                    role: Role::Customer,
                    id: customer_id.clone(),
                    display_name: thread.customer_name.clone(),
                })
            }
            Participant::Customer(_) => Err(Refusal::forbidden(format!(
                "conversation `{conversation_id}` is not yours"
            ))),
            Participant::Agent(agent_id) => match &thread.agent {
                Some((holder, name)) if holder == agent_id && thread.active => Ok(Author {
                    role: Role::Agent,
                    id: agent_id.clone(),
                    display_name: name.clone(),
                }),
                _ => Err(Refusal::forbidden(format!(
                    "conversation `{conversation_id}` is not assigned to you"
                ))),
            },
        }
    }

    /// Typing on or off, told to the other side while an agent holds the conversation.
    pub(crate) fn typing(
        &mut self,
        from: Participant,
        conversation_id: Id,
        on: bool,
        out: &mut Vec<Effect>,
    ) {
        let Some(thread) = self.threads.get(&conversation_id) else {
            return;
        };
        let holder = thread.agent.as_ref().map(|(id, _)| id);
        let (role, to) = match &from {
            Participant::Customer(c) if *c == thread.customer_id => match holder {
                Some(agent) if thread.active => (Role::Customer, Participant::Agent(agent.clone())),
                _ => return,
            },
            Participant::Agent(a) if holder == Some(a) && thread.active => (
                Role::Agent,
                Participant::Customer(thread.customer_id.clone()),
            ),
            // A member while nobody is there to tell: nothing to do.
            Participant::Agent(a) if holder == Some(a) => return,
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
    pub(crate) fn system_line(
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
    pub(crate) fn append(
        &mut self,
        conversation_id: &Id,
        body: EventBody,
        now: Millis,
        out: &mut Vec<Effect>,
    ) -> u64 {
        let thread = self
            .threads
            .get_mut(conversation_id)
            .expect("callers check the conversation is open");
        thread.last_seq += 1;
        if let EventBody::Message { author, text, .. } = &body
            && author.role == Role::Customer
            && thread.first_words.is_none()
        {
            thread.first_words = Some(text.clone());
        }
        let event = Arc::new(Event {
            conversation_id: conversation_id.clone(),
            seq: thread.last_seq,
            ts: now,
            body,
        });
        out.push(Effect::Persist(Record::Event(event.clone())));
        out.push(Effect::Notify {
            to: Participant::Customer(thread.customer_id.clone()),
            notice: Notice::Event(event.clone()),
        });
        if let Some((agent, _)) = &thread.agent {
            out.push(Effect::Notify {
                to: Participant::Agent(agent.clone()),
                notice: Notice::Event(event),
            });
        }
        thread.last_seq
    }
}

/// A reply to the request `req` of connection `conn` (both planes answer this way).
pub(crate) fn reply(out: &mut Vec<Effect>, conn: ConnId, req: ReqId, reply: Reply) {
    out.push(Effect::Reply { conn, req, reply });
}

pub(crate) fn ack(conversation_id: Option<Id>, seq: Option<u64>) -> Reply {
    Reply::Ack {
        conversation_id,
        seq,
    }
}

pub(crate) fn not_open(conversation_id: &Id) -> Refusal {
    Refusal::not_found(format!(
        "there is no open conversation `{conversation_id}` (it may have been closed)"
    ))
}
