//! Scoring a finished conversation offline (`warmline score`): the same signals as
//! the live path, from the transcript alone.

use super::coaching::Coaching;
use super::conversation::Tracker;
use crate::core::model::Role;

/// One customer message's estimate.
#[derive(Clone, Debug, PartialEq)]
pub struct ScoredTurn {
    /// Position of the message in the conversation (0-based, all roles counted).
    pub index: usize,
    pub sentiment: f32,
    /// 1-5; below 2.5: dissatisfied.
    pub estimate: f32,
    pub cues: Vec<&'static str>,
}

/// A conversation's signals, computed from its messages.
#[derive(Clone, Debug, PartialEq)]
pub struct Scored {
    pub customer_messages: u32,
    pub agent_messages: u32,
    /// The conversation's satisfaction estimate, 1-5.
    pub estimate: f32,
    pub sentiment_start: Option<f32>,
    pub sentiment_end: Option<f32>,
    /// Coaching flags raised by agent messages: (code, count), in rule order.
    pub flags: Vec<(String, u32)>,
    pub turns: Vec<ScoredTurn>,
}

/// Scores `messages` (role and text, in order) with `coaching`'s rules. Messages of
/// other roles (system lines) are skipped but keep their index.
pub fn score(messages: &[(Role, &str)], coaching: &Coaching) -> Scored {
    let mut tracker = Tracker::new(0, &[]);
    let mut turns = Vec::new();
    let mut counts: Vec<(String, u32)> = coaching
        .rules()
        .iter()
        .map(|r| (r.code.to_string(), 0))
        .collect();
    let (mut first, mut last) = (None, None);
    let (mut customer, mut agent) = (0, 0);
    for (index, (role, text)) in messages.iter().enumerate() {
        match role {
            Role::Customer => {
                customer += 1;
                let mood = tracker.mood(text);
                first.get_or_insert(mood.sentiment);
                last = Some(mood.sentiment);
                turns.push(ScoredTurn {
                    index,
                    sentiment: mood.sentiment,
                    estimate: mood.estimate,
                    cues: mood.cues,
                });
            }
            Role::Agent => {
                agent += 1;
                tracker.agent_said(0, text);
                for flag in coaching.flags(text) {
                    if let Some(c) = counts.iter_mut().find(|(code, _)| *code == *flag.code) {
                        c.1 += 1;
                    }
                }
            }
            Role::System => {}
        }
    }
    let summary = tracker.summary(0);
    Scored {
        customer_messages: customer,
        agent_messages: agent,
        estimate: summary.estimate.map_or(3.0, |e| e as f32 / 100.0),
        sentiment_start: first,
        sentiment_end: last,
        flags: counts,
        turns,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bad_conversation_scores_below_a_good_one() {
        let coaching = Coaching::default();
        let bad = score(
            &[
                (Role::Customer, "My order never arrived."),
                (
                    Role::Agent,
                    "It's our policy, there's nothing more I can do.",
                ),
                (Role::Customer, "This is ridiculous, terrible service!"),
            ],
            &coaching,
        );
        let good = score(
            &[
                (Role::Customer, "My order never arrived."),
                (
                    Role::Agent,
                    "I'm sorry! I've sent a new one, it arrives tomorrow.",
                ),
                (Role::Customer, "Great, thank you so much!"),
            ],
            &coaching,
        );
        assert!(bad.estimate < good.estimate, "{bad:?} vs {good:?}");
        assert_eq!((bad.customer_messages, bad.agent_messages), (2, 1));
        assert_eq!(bad.turns.len(), 2);
        assert_eq!(bad.turns[1].index, 2);
        assert!(bad.turns[1].estimate < 2.5, "{bad:?}");
        let count = |s: &Scored, code: &str| {
            s.flags
                .iter()
                .find(|(c, _)| c == code)
                .map_or(0, |(_, n)| *n)
        };
        assert_eq!(count(&bad, "policy"), 1);
        assert_eq!(count(&bad, "giving_up"), 1);
        assert_eq!(count(&good, "apology"), 1);
        assert!(bad.sentiment_end < Some(0.0) && good.sentiment_end > Some(0.0));
    }
}
