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
    /// Sum and count of the estimates of the customer messages that said something
    /// (the moods the agent was shown): what the next one is compared with.
    said_sum: f32,
    said: u32,
}

/// Sentiment and satisfaction of the customer's latest message, for the agent.
///
/// The label (`feeling`) is what the customer *just said*: that message's estimate and
/// its own signals, not the conversation's average, which the estimator's mean keeps
/// near neutral for a while. The trend (`trend`, `direction`) is how the mood moved: this
/// message's estimate against the mean of the earlier ones that said something.
#[derive(Clone, Debug, PartialEq)]
pub struct Mood {
    /// VADER compound of the message, -1..1.
    pub sentiment: f32,
    /// This message's estimate minus the mean estimate of the customer's earlier
    /// messages that said something, in rating points (0 for the first one).
    pub trend: f32,
    /// Satisfaction estimate of the message, 1..5 (below 2.5: dissatisfied).
    pub estimate: f32,
    /// Of the conversation so far, 1..5.
    pub overall: f32,
    /// The mean estimate of the earlier messages that said something (none before).
    pub before: Option<f32>,
    /// The signals that moved the estimate (see docs/satisfaction.md).
    pub cues: Vec<&'static str>,
    /// How the customer sounds in this message.
    pub feeling: Feeling,
    /// How the mood moved since the earlier messages.
    pub direction: Direction,
}

/// How the customer sounds in one message: the label the agent sees.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Feeling {
    Unhappy,
    Neutral,
    Happy,
}

/// How the customer's mood moved: their latest message against the earlier ones.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    Improving,
    Steady,
    Worsening,
}

/// A message this negative (VADER compound) reads unhappy whatever the cues say:
/// the estimate is only 3 + 0.75 * s without a cue, so "I am furious. Nobody answers
/// my emails..." (-0.53) is 2.6, near neutral. Set between a report ("I have a problem
/// with my bill", -0.40) and an emotion ("I'm disappointed", -0.48).
pub const STRONG_NEGATIVE: f32 = -0.45;
/// A message with no dissatisfaction cue and at least this sentiment reads happy: its
/// own words are worth a quarter point or more (3 + 0.75 * s >= 3.25). A plain "thanks"
/// is 0.44, "ok" 0.30. The sentiment, not the estimate: an apology in the agent's
/// previous message lowers the estimate, but not what the customer said.
pub const HAPPY_FROM: f32 = 0.33;
/// Below this estimate a message is dissatisfied (docs/satisfaction.md).
pub const UNHAPPY_BELOW: f32 = 2.5;
/// The trend is steady within this many rating points of the earlier messages' mean.
pub const STEADY_WITHIN: f32 = 0.25;
/// Words customers stress to press a demand ("a refund NOW"). Any other word in
/// capitals counts only in a negative message: on its own it may be a name or a code
/// ("UPS", "PDF").
const PRESSED: &[&str] = &[
    "NOW",
    "ASAP",
    "TODAY",
    "IMMEDIATELY",
    "NOT",
    "NEVER",
    "NOBODY",
    "NOTHING",
    "STILL",
    "AGAIN",
    "WHY",
];

/// Cues that read unhappy on their own, at any estimate: an explicit complaint,
/// shouting, giving up after a failure.
const UNHAPPY_CUES: &[&str] = &["complaint", "shouting", "gave_up"];

impl Mood {
    /// Whether the message said nothing the agent needs to see: no cue fired and its
    /// sentiment is within VADER's neutral band (±0.05).
    pub fn is_quiet(&self) -> bool {
        self.cues.is_empty() && self.sentiment.abs() < 0.05
    }

    /// The label's key on the wire and in the console (`negative`, `neutral`, `positive`).
    pub fn label(&self) -> &'static str {
        match self.feeling {
            Feeling::Unhappy => "negative",
            Feeling::Neutral => "neutral",
            Feeling::Happy => "positive",
        }
    }

    /// The direction's name on the wire.
    pub fn direction_name(&self) -> &'static str {
        match self.direction {
            Direction::Improving => "improving",
            Direction::Steady => "steady",
            Direction::Worsening => "worsening",
        }
    }
}

/// The label of one customer message, from that message alone: unhappy when its
/// estimate is below 2.5, its sentiment is strongly negative, an unhappy cue fired, or
/// the customer raises their voice (a word in capitals) in a message that is not
/// positive; happy when no dissatisfaction cue fired (the estimator then reports
/// `positive_sentiment`) and the sentiment reaches [`HAPPY_FROM`]; neutral otherwise.
pub fn feeling(estimate: f32, sentiment: f32, cues: &[&str], text: &str) -> Feeling {
    let unhappy = estimate < UNHAPPY_BELOW
        || sentiment <= STRONG_NEGATIVE
        || cues.iter().any(|c| UNHAPPY_CUES.contains(c))
        || raises_voice(text, sentiment);
    if unhappy {
        Feeling::Unhappy
    } else if sentiment >= HAPPY_FROM && cues.contains(&"positive_sentiment") {
        Feeling::Happy
    } else {
        Feeling::Neutral
    }
}

/// How a message's estimate compares with the mean of the earlier ones.
pub fn direction(estimate: f32, before: Option<f32>) -> Direction {
    match before.map(|b| estimate - b) {
        Some(d) if d >= STEADY_WITHIN => Direction::Improving,
        Some(d) if d <= -STEADY_WITHIN => Direction::Worsening,
        _ => Direction::Steady,
    }
}

/// A word of three or more letters in capitals in a message otherwise written in
/// lower case, when the message is negative, or when the word presses a demand
/// ([`PRESSED`]) and the message is not positive: "I want a refund NOW". (A message
/// all in capitals is the estimator's `shouting` cue.)
fn raises_voice(text: &str, sentiment: f32) -> bool {
    if sentiment >= 0.3 {
        return false;
    }
    let mut lower = false;
    let mut stressed = false;
    for word in text.split(|c: char| !c.is_alphanumeric()) {
        if word.chars().any(char::is_lowercase) {
            lower = true;
        } else if word.chars().count() >= 3
            && word.chars().all(char::is_uppercase)
            && (sentiment <= -0.05 || PRESSED.contains(&word))
        {
            stressed = true;
        }
    }
    lower && stressed
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

    /// The customer's mood after their latest message: its label, sentiment and
    /// estimate, and the trend against the earlier messages that said something.
    pub fn mood(&mut self, text: &str) -> Mood {
        let turn = self.dialogue.customer(satisfaction::shared(), text);
        self.sentiment_first.get_or_insert(turn.sentiment);
        self.sentiment_last = Some(turn.sentiment);
        let before = (self.said > 0).then(|| self.said_sum / self.said as f32);
        let mood = Mood {
            sentiment: turn.sentiment,
            trend: before.map_or(0.0, |b| turn.estimate - b),
            estimate: turn.estimate,
            overall: self.dialogue.overall(),
            before,
            feeling: feeling(turn.estimate, turn.sentiment, &turn.cues, text),
            direction: direction(turn.estimate, before),
            cues: turn.cues,
        };
        if !mood.is_quiet() {
            self.said_sum += mood.estimate;
            self.said += 1;
        }
        mood
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

    /// The customer of issue 20: furious, shouting "NOW", then "the worst shop". The
    /// estimator puts the first near neutral on its own (its figures are issue 29's);
    /// the label must not.
    #[test]
    fn an_angry_customer_reads_unhappy_from_the_first_message() {
        let mut t = Tracker::new(0, &[]);
        let first = t.mood("I am furious. Nobody answers my emails and I want a refund NOW");
        assert_eq!(first.feeling, Feeling::Unhappy, "{first:?}");
        assert_eq!(first.label(), "negative");
        assert!(!first.is_quiet());
        assert_eq!((first.before, first.direction), (None, Direction::Steady));
        let second = t.mood("This is the worst shop I have ever used");
        assert_eq!(second.feeling, Feeling::Unhappy, "{second:?}");
        assert_eq!(second.before, Some(first.estimate));
        // Angry, then angry again: not "improving", and never "Neutral".
        assert_ne!(second.direction, Direction::Improving, "{second:?}");

        let mut t = Tracker::new(0, &[]);
        let opening = t.mood("This is absolutely ridiculous... Terrible service.");
        assert_eq!(opening.feeling, Feeling::Unhappy, "{opening:?}");
    }

    #[test]
    fn a_calm_thank_you_reads_happy() {
        let mut t = Tracker::new(0, &[]);
        let m = t.mood("thanks, that fixed it");
        assert_eq!(m.feeling, Feeling::Happy, "{m:?}");
        assert_eq!(m.label(), "positive");
    }

    /// The label follows the latest message; the trend tells where it came from.
    #[test]
    fn angry_then_calm_reads_happy_and_improving() {
        let mut t = Tracker::new(0, &[]);
        t.mood("I am furious. Nobody answers my emails and I want a refund NOW");
        t.agent_said(1, "I'm sorry. I have refunded your order now.");
        let calm = t.mood("thanks, that fixed it");
        assert_eq!(calm.feeling, Feeling::Happy, "{calm:?}");
        assert_eq!(calm.direction, Direction::Improving, "{calm:?}");
        assert!(calm.trend >= STEADY_WITHIN, "{calm:?}");
        // And back: calm, then angry, is getting worse.
        let angry = t.mood("This is the worst shop I have ever used");
        assert_eq!(angry.feeling, Feeling::Unhappy, "{angry:?}");
        assert_eq!(angry.direction, Direction::Worsening, "{angry:?}");
    }

    /// Plain questions and facts are neutral; a capital that is a name or a code is
    /// not raising one's voice.
    #[test]
    fn plain_messages_read_neutral() {
        for text in [
            "my order number is 4411",
            "Can you check my UPS tracking?",
            "I have a problem with my bill",
            "Where do I find the ABC123 form?",
        ] {
            let mut t = Tracker::new(0, &[]);
            let m = t.mood(text);
            assert_eq!(m.feeling, Feeling::Neutral, "{text}: {m:?}");
        }
        // A word in capitals: a raised voice when it presses a demand or the message
        // is negative; a name or a code otherwise, and never in a positive message.
        assert!(raises_voice("I want a refund NOW", 0.08));
        assert!(raises_voice("UPS lost my parcel", -0.3));
        assert!(!raises_voice("Can you send it as a PDF", 0.0));
        assert!(!raises_voice("I want a refund now", 0.08));
        assert!(!raises_voice("I WANT A REFUND NOW", 0.08));
        assert!(!raises_voice("Thank you, it works NOW", 0.6));
        let mut t = Tracker::new(0, &[]);
        assert_eq!(t.mood("I want a refund NOW").feeling, Feeling::Unhappy);
        let mut t = Tracker::new(0, &[]);
        assert_eq!(t.mood("I am disappointed").feeling, Feeling::Unhappy);
    }

    /// Quiet messages (no cue, neutral sentiment) are not shown, and do not dilute
    /// the baseline the trend compares with.
    #[test]
    fn quiet_messages_leave_the_trend_alone() {
        let mut t = Tracker::new(0, &[]);
        let a = t.mood("This is the worst shop I have ever used");
        let quiet = t.mood("Can you check my UPS tracking?");
        assert!(quiet.is_quiet(), "{quiet:?}");
        // 2.44 after 2.53: steady (with the quiet 3.0 counted it would read worse).
        let b = t.mood("Terrible service, really awful.");
        assert_eq!(b.before, Some(a.estimate));
        assert_eq!(b.direction, Direction::Steady, "{b:?}");
    }

    #[test]
    fn nothing_known_means_nothing_repeated() {
        let mut t = Tracker::new(0, &[("code".into(), "ab".into())]);
        assert!(!t.customer_said(1, "ab ab ab"));
    }
}
