//! What a conversation was like for the customer, measured as it happens: how long
//! they waited, how fast the agent answered, whether they were bounced between
//! agents, whether they had to repeat what we already knew, whether they gave up
//! waiting. Kept whole when the conversation closes (`Summary`).

use super::satisfaction::{self, Dialogue};
use crate::core::model::{Id, Millis, Text};

/// A transfer this soon after the agent accepted is a bounce: the customer was
/// passed on before anyone tried.
pub const BOUNCE_WITHIN_MS: Millis = 60_000;

/// Known values shorter than this are too common to count as repeated information.
const MIN_KNOWN_VALUE_CHARS: usize = 4;

/// The running measures of one conversation.
#[derive(Clone, Debug, Default)]
pub struct Tracker {
    created_at: Millis,
    first_assigned_at: Option<Millis>,
    last_accept_at: Option<Millis>,
    first_response_at: Option<Millis>,
    /// The first customer message the agent has not answered yet.
    waiting_since: Option<Millis>,
    response_total_ms: u64,
    responses: u32,
    response_max_ms: u64,
    transfers_cold: u32,
    transfers_warm: u32,
    bounces: u32,
    /// Trusted attributes (name, value) known before the customer said anything.
    known: Vec<(Id, Text)>,
    repeated_info: u32,
    asked_known: u32,
    customer_messages: u32,
    agent_messages: u32,
    flags_negative: u32,
    flags_positive: u32,
    /// The satisfaction estimator's running state (customer and agent messages).
    dialogue: Dialogue,
    sentiment_first: Option<f32>,
    sentiment_last: Option<f32>,
}

/// Sentiment and satisfaction of the customer's latest message, for the agent.
#[derive(Clone, Debug, PartialEq)]
pub struct Mood {
    /// VADER compound of the message, -1..1.
    pub sentiment: f32,
    /// Latest minus first sentiment of the conversation.
    pub trend: f32,
    /// Satisfaction estimate of the message, 1..5 (below 2.5: dissatisfied).
    pub estimate: f32,
    /// Of the conversation so far, 1..5.
    pub overall: f32,
    /// The signals that moved the estimate (see docs/satisfaction.md).
    pub cues: Vec<&'static str>,
}

/// The measures kept when a conversation closes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Summary {
    /// Until an agent first accepted (or until the end, if none did).
    pub wait_ms: u64,
    /// From the agent accepting to their first message.
    pub first_response_ms: Option<u64>,
    /// Customer message to the agent's next message, on average and at worst.
    pub mean_response_ms: Option<u64>,
    pub max_response_ms: Option<u64>,
    /// From the first accept to the close.
    pub handle_ms: Option<u64>,
    /// The customer left while waiting, never served.
    pub abandoned: bool,
    pub transfers_cold: u32,
    pub transfers_warm: u32,
    pub bounces: u32,
    /// Customer messages that repeated what we already knew (an account number...).
    pub repeated_info: u32,
    /// Agent messages that asked for what we already knew.
    pub asked_known: u32,
    pub customer_messages: u32,
    pub agent_messages: u32,
    pub flags_negative: u32,
    pub flags_positive: u32,
    /// Customer sentiment (VADER compound) at the first and last message, in
    /// thousandths (-1000..1000).
    pub sentiment_start: Option<i32>,
    pub sentiment_end: Option<i32>,
    /// The conversation's satisfaction estimate (1..5) in hundredths; what the report
    /// uses when the customer did not answer the survey.
    pub estimate: Option<u32>,
}

impl Tracker {
    /// `known`: trusted attributes at the start (customer context, IVR parameters).
    pub fn new(created_at: Millis, known: &[(Id, Text)]) -> Tracker {
        Tracker {
            created_at,
            known: known
                .iter()
                .filter(|(_, v)| v.chars().count() >= MIN_KNOWN_VALUE_CHARS)
                .cloned()
                .collect(),
            ..Tracker::default()
        }
    }

    pub fn accepted(&mut self, at: Millis) {
        self.first_assigned_at.get_or_insert(at);
        self.last_accept_at = Some(at);
    }

    /// A transfer by the agent; `warm` when they stayed until the target accepted.
    pub fn transferred(&mut self, at: Millis, warm: bool) {
        if warm {
            self.transfers_warm += 1;
        } else {
            self.transfers_cold += 1;
        }
        if self
            .last_accept_at
            .is_some_and(|accepted| at.saturating_sub(accepted) < BOUNCE_WITHIN_MS)
        {
            self.bounces += 1;
        }
    }

    /// The customer's mood after their latest message (sentiment, trend, estimate).
    pub fn mood(&mut self, text: &str) -> Mood {
        let turn = self.dialogue.customer(satisfaction::shared(), text);
        let first = *self.sentiment_first.get_or_insert(turn.sentiment);
        self.sentiment_last = Some(turn.sentiment);
        Mood {
            sentiment: turn.sentiment,
            trend: turn.sentiment - first,
            estimate: turn.estimate,
            overall: self.dialogue.overall(),
            cues: turn.cues,
        }
    }

    /// A customer message; `true` when it repeated something we already knew.
    pub fn customer_said(&mut self, at: Millis, text: &str) -> bool {
        self.customer_messages += 1;
        self.waiting_since.get_or_insert(at);
        let repeated = self.known.iter().any(|(_, value)| contains(text, value));
        if repeated {
            self.repeated_info += 1;
        }
        repeated
    }

    /// An agent message; returns the name of a known attribute it asked for, if any
    /// (the agent had it in the conversation's context).
    pub fn agent_said(&mut self, at: Millis, text: &str) -> Option<Id> {
        self.agent_messages += 1;
        self.dialogue.agent(satisfaction::shared(), text);
        if self.first_response_at.is_none() && self.first_assigned_at.is_some() {
            self.first_response_at = Some(at);
        }
        if let Some(since) = self.waiting_since.take() {
            let ms = at.saturating_sub(since);
            self.response_total_ms += ms;
            self.responses += 1;
            self.response_max_ms = self.response_max_ms.max(ms);
        }
        let asked = text.contains('?').then(|| {
            self.known
                .iter()
                .find(|(name, _)| contains(text, &name.replace('_', " ")))
                .map(|(name, _)| name.clone())
        });
        let asked = asked.flatten();
        if asked.is_some() {
            self.asked_known += 1;
        }
        asked
    }

    pub fn flagged(&mut self, negative: u32, positive: u32) {
        self.flags_negative += negative;
        self.flags_positive += positive;
    }

    /// The measures at the close (`served`: an agent ever accepted it).
    pub fn summary(&self, closed_at: Millis) -> Summary {
        let served = self.first_assigned_at;
        Summary {
            wait_ms: served.unwrap_or(closed_at).saturating_sub(self.created_at),
            first_response_ms: self
                .first_response_at
                .zip(served)
                .map(|(r, a)| r.saturating_sub(a)),
            mean_response_ms: (self.responses > 0)
                .then(|| self.response_total_ms / u64::from(self.responses)),
            max_response_ms: (self.responses > 0).then_some(self.response_max_ms),
            handle_ms: served.map(|a| closed_at.saturating_sub(a)),
            abandoned: served.is_none(),
            transfers_cold: self.transfers_cold,
            transfers_warm: self.transfers_warm,
            bounces: self.bounces,
            repeated_info: self.repeated_info,
            asked_known: self.asked_known,
            customer_messages: self.customer_messages,
            agent_messages: self.agent_messages,
            flags_negative: self.flags_negative,
            flags_positive: self.flags_positive,
            sentiment_start: self.sentiment_first.map(milli),
            sentiment_end: self.sentiment_last.map(milli),
            estimate: (self.dialogue.turns() > 0)
                .then(|| (self.dialogue.overall() * 100.0).round() as u32),
        }
    }
}

fn milli(v: f32) -> i32 {
    (v.clamp(-1.0, 1.0) * 1000.0).round() as i32
}

/// Whether `needle` occurs in `text`, ignoring ASCII case and, for values made of
/// digits, the spaces and dashes people type between them.
fn contains(text: &str, needle: &str) -> bool {
    let digits_only = needle.chars().all(|c| c.is_ascii_digit());
    if digits_only {
        let typed: String = text.chars().filter(|c| c.is_ascii_digit()).collect();
        return typed.contains(needle);
    }
    text.to_ascii_lowercase()
        .contains(&needle.to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn known() -> Vec<(Id, Text)> {
        vec![
            ("account_number".into(), "12345678".into()),
            ("tier".into(), "gold".into()),
            ("intent".into(), "billing".into()),
        ]
    }

    #[test]
    fn timing_of_a_served_conversation() {
        let mut t = Tracker::new(1_000, &[]);
        t.customer_said(1_000, "hello");
        t.accepted(31_000);
        t.agent_said(36_000, "Hi, how can I help?");
        t.customer_said(40_000, "my order");
        t.customer_said(45_000, "is late");
        t.agent_said(60_000, "Let me check.");
        let s = t.summary(120_000);
        assert_eq!(s.wait_ms, 30_000);
        assert_eq!(s.first_response_ms, Some(5_000));
        // 1_000 -> 36_000 (35 s) and 40_000 -> 60_000 (20 s).
        assert_eq!(s.mean_response_ms, Some(27_500));
        assert_eq!(s.max_response_ms, Some(35_000));
        assert_eq!(s.handle_ms, Some(89_000));
        assert!(!s.abandoned);
        assert_eq!((s.customer_messages, s.agent_messages), (3, 2));
    }

    #[test]
    fn a_customer_who_leaves_while_waiting_abandoned() {
        let mut t = Tracker::new(0, &[]);
        t.customer_said(0, "anyone?");
        let s = t.summary(95_000);
        assert!(s.abandoned);
        assert_eq!(s.wait_ms, 95_000);
        assert_eq!(s.handle_ms, None);
        assert_eq!(s.first_response_ms, None);
    }

    #[test]
    fn quick_transfers_are_bounces() {
        let mut t = Tracker::new(0, &[]);
        t.accepted(10_000);
        t.transferred(30_000, false);
        t.accepted(40_000);
        t.transferred(200_000, true);
        let s = t.summary(300_000);
        assert_eq!((s.transfers_cold, s.transfers_warm, s.bounces), (1, 1, 1));
    }

    #[test]
    fn repeating_what_we_knew_is_effort() {
        let mut t = Tracker::new(0, &known());
        assert!(t.customer_said(1, "my account is 1234-5678, again!"));
        assert!(!t.customer_said(2, "my order is late"));
        // Too short to count: "gold" is 4 chars and counts; "no" would not.
        assert!(t.customer_said(3, "I'm a GOLD member"));
        t.accepted(4);
        assert_eq!(
            t.agent_said(5, "Could you give me your account number?"),
            Some("account_number".into())
        );
        // Not a question, or another word: not asking.
        assert_eq!(t.agent_said(6, "I see your account number here."), None);
        assert_eq!(t.agent_said(7, "What is your order id?"), None);
        let s = t.summary(10);
        assert_eq!((s.repeated_info, s.asked_known), (2, 1));
    }

    #[test]
    fn nothing_known_means_nothing_repeated() {
        let mut t = Tracker::new(0, &[("code".into(), "ab".into())]);
        assert!(!t.customer_said(1, "ab ab ab"));
    }
}
