//! Coaching flags from the agent's own words: quoting policy instead of solving,
//! telling the customer how to feel, passing the blame, giving up; and, as positive
//! signals, an apology or a concrete next step. Each flag names the message `seq` and
//! carries a short hint, so the agent can still change the outcome.
//!
//! The patterns are data (`signals.coaching` in the config; `default_rules` when none
//! are configured). They are matched case-insensitively, on word boundaries, in one
//! pass over the message (Aho-Corasick over every pattern of every rule).

use aho_corasick::{AhoCorasick, AhoCorasickBuilder, MatchKind};

use crate::core::model::Id;

/// One kind of flag and the phrases that raise it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CoachingRule {
    /// Stable, snake_case: what reports count (`policy`, `apology`...).
    pub code: Id,
    /// A sentence for the agent.
    pub hint: Id,
    /// A good sign (apology, next step) rather than a habit to lose.
    pub positive: bool,
    /// Phrases, matched case-insensitively on word boundaries.
    pub phrases: Vec<String>,
}

/// A flag on one agent message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Flag {
    pub code: Id,
    pub hint: Id,
    pub positive: bool,
}

/// The rules, compiled once.
pub struct Coaching {
    rules: Vec<CoachingRule>,
    matcher: Option<AhoCorasick>,
    /// Pattern index -> rule index.
    rule_of: Vec<usize>,
}

impl std::fmt::Debug for Coaching {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Coaching")
            .field("rules", &self.rules.len())
            .finish()
    }
}

impl Default for Coaching {
    fn default() -> Self {
        Coaching::new(default_rules())
    }
}

impl Coaching {
    pub fn new(rules: Vec<CoachingRule>) -> Coaching {
        let mut patterns = Vec::new();
        let mut rule_of = Vec::new();
        for (i, rule) in rules.iter().enumerate() {
            for phrase in &rule.phrases {
                let phrase = normalize(phrase);
                if !phrase.is_empty() {
                    patterns.push(phrase);
                    rule_of.push(i);
                }
            }
        }
        let matcher = AhoCorasickBuilder::new()
            .ascii_case_insensitive(true)
            .match_kind(MatchKind::LeftmostLongest)
            .build(&patterns)
            .ok();
        Coaching {
            rules,
            matcher,
            rule_of,
        }
    }

    /// The flags an agent message raises, each rule at most once, in rule order.
    pub fn flags(&self, text: &str) -> Vec<Flag> {
        let Some(matcher) = &self.matcher else {
            return Vec::new();
        };
        // Curly apostrophes (phones and word processors) match straight ones.
        let text = normalize(text);
        let bytes = text.as_bytes();
        let mut hit = vec![false; self.rules.len()];
        for m in matcher.find_iter(&text) {
            let before = m.start().checked_sub(1).map(|i| bytes[i]);
            let after = bytes.get(m.end()).copied();
            let boundary = |b: Option<u8>| b.is_none_or(|b| !b.is_ascii_alphanumeric());
            if boundary(before) && boundary(after) {
                hit[self.rule_of[m.pattern().as_usize()]] = true;
            }
        }
        self.rules
            .iter()
            .zip(hit)
            .filter(|(_, hit)| *hit)
            .map(|(rule, _)| Flag {
                code: rule.code.clone(),
                hint: rule.hint.clone(),
                positive: rule.positive,
            })
            .collect()
    }

    pub fn rules(&self) -> &[CoachingRule] {
        &self.rules
    }
}

fn normalize(s: &str) -> String {
    s.replace(['\u{2019}', '\u{2018}'], "'")
}

fn rule(code: &str, positive: bool, hint: &str, phrases: &[&str]) -> CoachingRule {
    CoachingRule {
        code: code.into(),
        hint: hint.into(),
        positive,
        phrases: phrases.iter().map(|p| (*p).to_owned()).collect(),
    }
}

/// The rules in force when the config names none (documented in
/// warmline.example.toml, `[[signals.coaching]]`).
pub fn default_rules() -> Vec<CoachingRule> {
    vec![
        rule(
            "policy",
            false,
            "Quoting policy is not a solution: say what you can do.",
            &[
                "it's our policy",
                "it is our policy",
                "company policy",
                "against our policy",
                "our policy is",
                "policy states",
                "i can't do that",
                "i cannot do that",
                "we don't do that",
                "we do not do that",
                "that's not possible",
                "that is not possible",
                "not allowed to",
            ],
        ),
        rule(
            "telling_feelings",
            false,
            "Don't tell the customer how to feel or claim to know; acknowledge what happened.",
            &[
                "calm down",
                "don't be upset",
                "do not be upset",
                "there's no need to be upset",
                "no need to get angry",
                "you shouldn't be upset",
                "i completely understand",
                "i totally understand",
                "i know exactly how you feel",
                "relax",
            ],
        ),
        rule(
            "blame",
            false,
            "Don't pass the blame; own the problem and fix it.",
            &[
                "not our fault",
                "not my fault",
                "you should have read",
                "you should have",
                "you didn't read",
                "you did not read",
                "as i already said",
                "as i said before",
                "like i said",
                "that's your problem",
                "the other department",
                "blame the",
            ],
        ),
        rule(
            "giving_up",
            false,
            "Never end on nothing: offer the next best step or escalate.",
            &[
                "nothing more i can do",
                "nothing else i can do",
                "nothing i can do",
                "there's nothing we can do",
                "there is nothing we can do",
                "out of my hands",
                "can't help you",
                "cannot help you",
            ],
        ),
        rule(
            "apology",
            true,
            "Good: you owned it with an apology.",
            &[
                "i'm sorry",
                "i am sorry",
                "we're sorry",
                "we are sorry",
                "i apologize",
                "i apologise",
                "my apologies",
                "sorry for",
                "sorry about",
            ],
        ),
        rule(
            "next_step",
            true,
            "Good: a concrete next step.",
            &[
                "i will",
                "i'll",
                "let me",
                "i've sent",
                "i have sent",
                "i've refunded",
                "i have refunded",
                "i've escalated",
                "i have escalated",
                "by tomorrow",
                "within 24 hours",
                "here's what i can do",
                "here is what i can do",
                "what i can do is",
            ],
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn codes(text: &str) -> Vec<String> {
        Coaching::default()
            .flags(text)
            .into_iter()
            .map(|f| f.code.to_string())
            .collect()
    }

    #[test]
    fn each_habit_is_flagged() {
        assert_eq!(codes("I'm sorry, it's our policy."), ["policy", "apology"]);
        assert_eq!(codes("I CAN'T DO THAT for you"), ["policy"]);
        assert_eq!(codes("Please calm down, sir"), ["telling_feelings"]);
        assert_eq!(codes("I completely understand."), ["telling_feelings"]);
        assert_eq!(codes("That's not our fault."), ["blame"]);
        assert_eq!(codes("You should have read the terms"), ["blame"]);
        assert_eq!(codes("There's nothing more I can do."), ["giving_up"]);
        assert_eq!(codes("I\u{2019}m sorry about the delay"), ["apology"]);
        assert_eq!(
            codes("Let me fix that: I've refunded the fee."),
            ["next_step"]
        );
    }

    #[test]
    fn near_misses_are_not_flagged() {
        // Words inside other words, and the same words meaning something else.
        assert!(codes("The policyholder is covered.").is_empty());
        assert!(codes("I can do that right away.").is_empty());
        assert!(codes("Relaxation mode is in settings.").is_empty());
        assert!(codes("Our policy documents are attached.").is_empty());
        assert!(codes("Sorrymore is a brand.").is_empty());
        assert!(codes("").is_empty());
    }

    #[test]
    fn rules_are_data() {
        let coaching = Coaching::new(vec![rule("greeting", true, "Nice.", &["good morning"])]);
        let flags = coaching.flags("Good Morning! How can I help?");
        assert_eq!(flags.len(), 1);
        assert_eq!(&*flags[0].code, "greeting");
        assert!(flags[0].positive);
        assert!(
            Coaching::new(Vec::new())
                .flags("it's our policy")
                .is_empty()
        );
    }
}
