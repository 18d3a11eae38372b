//! Transparent per-message customer-satisfaction estimator (pure: no I/O, no clock, no globals).
//!
//! For every customer message it returns an estimate on the usual 1..5 rating scale
//! (3 = neutral, below 2.5 = dissatisfied) from the message and the conversation so far:
//!
//! ```text
//! estimate = clamp(3 + W_SENT * s' - W_REJECT * (cue units) - W_FAIL * [agent failed], 1, 5)
//! ```
//!
//! * `s'` is the VADER compound (Hutto & Gilbert 2014; a faithful port of vaderSentiment
//!   3.3.2 below) of the message without its opening answer particle ("No, ..."), and with its
//!   positive part dropped when a dissatisfaction cue fired (politeness is not satisfaction).
//! * cue units: short phrase lists for service-dialogue moves a sentiment lexicon misses: the
//!   customer rejecting (1, or 1/2 when worded as a polite deferral "no thanks, not now"),
//!   correcting (1, +1/2 on top of a rejection), declining (1), asking for alternatives (1/2),
//!   soft-correcting ("actually", "instead", an opening "sorry"; 1/2), persisting ("still",
//!   "again"; 1/2), repeating an earlier request (1/2), complaining about the service (2),
//!   closing right after an agent failure (gave up; 1), shouting in capitals (1/2).
//! * `[agent failed]`: the agent's last message(s) since the customer spoke apologised or
//!   reported a failure ("sorry", "unable", "no results", ...).
//!
//! [`Dialogue::overall`] = 0.9 * mean + 0.1 * min of the turn estimates. Every signal that fired
//! is named in [`TurnEstimate::cues`]. The four weights are in [`Params`]; FORMULA.md gives the
//! reasons and the figures on the USS SGD ratings.
//!
//! [`Estimator::new`] parses the lexicon and compiles the phrase automata once (about 2 ms);
//! share it (it is `Send + Sync`). The VADER lexicon and rules are MIT-licensed (Copyright (c)
//! 2016 C.J. Hutto); the included lexicon files carry that license at their top.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use aho_corasick::{AhoCorasick, AhoCorasickBuilder, MatchKind};

// ---------------------------------------------------------------------------------------------
// Tunable weights (the only numbers fitted to data; see FORMULA.md)
// ---------------------------------------------------------------------------------------------

/// The four weights of the formula, chosen on the even-numbered half of the USS SGD dialogues
/// (see FORMULA.md). `Params::default()` holds them; other values are for evaluation harnesses.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Params {
    /// Rating points per unit of VADER compound (compound is in -1..1).
    pub w_sent: f32,
    /// Rating points per cue unit (one full "the customer does not accept what the agent did"
    /// signal: rejection, correction, decline); half-strength cues use half, complaints twice.
    pub w_reject: f32,
    /// Penalty when the agent's previous message reported a failure / apologised.
    pub w_fail: f32,
    /// Dialogue aggregate: overall = (1 - mix) * mean(turn estimates) + mix * min(turn estimates).
    pub overall_mix: f32,
}

impl Default for Params {
    fn default() -> Self {
        Params {
            w_sent: 0.75,
            w_reject: 0.6,
            w_fail: 0.2,
            overall_mix: 0.1,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Small fast hasher for the lexicon (FNV-1a); keeps the crate free of extra dependencies.
// ---------------------------------------------------------------------------------------------

#[derive(Default, Clone, Copy)]
struct Fnv(u64);
impl Hasher for Fnv {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        let mut h = if self.0 == 0 {
            0xcbf2_9ce4_8422_2325
        } else {
            self.0
        };
        for b in bytes {
            h ^= *b as u64;
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        self.0 = h;
    }
}
type FnvMap<K, V> = HashMap<K, V, BuildHasherDefault<Fnv>>;

// ---------------------------------------------------------------------------------------------
// VADER (port of vaderSentiment 3.3.2, MIT, C.J. Hutto)
// ---------------------------------------------------------------------------------------------

const VADER_LEXICON: &str = include_str!("vader_lexicon.txt");
const VADER_EMOJI: &str = include_str!("vader_emoji.txt");

const B_INCR: f64 = 0.293;
const B_DECR: f64 = -0.293;
const C_INCR: f64 = 0.733;
const N_SCALAR: f64 = -0.74;

#[rustfmt::skip]
const NEGATE: &[&str] = &[
    "aint", "arent", "cannot", "cant", "couldnt", "darent", "didnt", "doesnt", "ain't", "aren't",
    "can't", "couldn't", "daren't", "didn't", "doesn't", "dont", "hadnt", "hasnt", "havent", "isnt",
    "mightnt", "mustnt", "neither", "don't", "hadn't", "hasn't", "haven't", "isn't", "mightn't",
    "mustn't", "neednt", "needn't", "never", "none", "nope", "nor", "not", "nothing", "nowhere",
    "oughtnt", "shant", "shouldnt", "uhuh", "wasnt", "werent", "oughtn't", "shan't", "shouldn't",
    "uh-uh", "wasn't", "weren't", "without", "wont", "wouldnt", "won't", "wouldn't", "rarely",
    "seldom", "despite",
];

#[rustfmt::skip]
const BOOSTERS_UP: &[&str] = &[
    "absolutely", "amazingly", "awfully", "completely", "considerable", "considerably", "decidedly",
    "deeply", "effing", "enormous", "enormously", "entirely", "especially", "exceptional",
    "exceptionally", "extreme", "extremely", "fabulously", "flipping", "flippin", "frackin",
    "fracking", "fricking", "frickin", "frigging", "friggin", "fully", "fuckin", "fucking",
    "fuggin", "fugging", "greatly", "hella", "highly", "hugely", "incredible", "incredibly",
    "intensely", "major", "majorly", "more", "most", "particularly", "purely", "quite", "really",
    "remarkably", "so", "substantially", "thoroughly", "total", "totally", "tremendous",
    "tremendously", "uber", "unbelievably", "unusually", "utter", "utterly", "very",
];
#[rustfmt::skip]
const BOOSTERS_DOWN: &[&str] = &[
    "almost", "barely", "hardly", "just enough", "kind of", "kinda", "kindof", "kind-of", "less",
    "little", "marginal", "marginally", "occasional", "occasionally", "partly", "scarce",
    "scarcely", "slight", "slightly", "somewhat", "sort of", "sorta", "sortof", "sort-of",
];
/// VADER's special-case idioms (multi-word keys only: single-word keys can never match).
const SPECIAL_CASES: &[(&[&str], f64)] = &[
    (&["the", "shit"], 3.0),
    (&["the", "bomb"], 3.0),
    (&["bad", "ass"], 1.5),
    (&["bus", "stop"], 0.0),
    (&["yeah", "right"], -2.0),
    (&["kiss", "of", "death"], -1.5),
    (&["to", "die", "for"], 3.0),
    (&["beating", "heart"], 3.5),
];

const ASCII_PUNCT: &str = "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~";

struct Vader {
    lexicon: FnvMap<&'static str, f64>,
    boosters: FnvMap<&'static str, f64>,
    negate: FnvMap<&'static str, ()>,
    emoji: FnvMap<char, &'static str>,
}

/// Python's `str.isupper()`: at least one cased character and no lower-case one.
fn is_upper(s: &str) -> bool {
    let mut any = false;
    for c in s.chars() {
        if c.is_lowercase() {
            return false;
        }
        if c.is_uppercase() {
            any = true;
        }
    }
    any
}

/// VADER's `_strip_punc_if_word`: strip leading/trailing ASCII punctuation unless that leaves
/// two characters or fewer (then it is probably an emoticon; keep the token as it was).
fn strip_punc_if_word(tok: &str) -> &str {
    let stripped = tok.trim_matches(|c: char| ASCII_PUNCT.contains(c));
    if stripped.chars().count() <= 2 {
        tok
    } else {
        stripped
    }
}

impl Vader {
    fn new() -> Vader {
        let mut lexicon = FnvMap::default();
        for line in VADER_LEXICON.lines() {
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let mut it = line.split('\t');
            let (Some(w), Some(v)) = (it.next(), it.next()) else {
                continue;
            };
            if let Ok(v) = v.trim().parse::<f64>() {
                lexicon.insert(w.trim(), v);
            }
        }
        let mut emoji = FnvMap::default();
        for line in VADER_EMOJI.lines() {
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let mut it = line.split('\t');
            let (Some(e), Some(d)) = (it.next(), it.next()) else {
                continue;
            };
            let mut cs = e.trim().chars();
            if let (Some(c), None) = (cs.next(), cs.next()) {
                emoji.insert(c, d.trim());
            }
        }
        let mut boosters = FnvMap::default();
        for w in BOOSTERS_UP {
            boosters.insert(*w, B_INCR);
        }
        for w in BOOSTERS_DOWN {
            boosters.insert(*w, B_DECR);
        }
        let negate = NEGATE.iter().map(|w| (*w, ())).collect();
        Vader {
            lexicon,
            boosters,
            negate,
            emoji,
        }
    }

    fn negated(&self, w: &str) -> bool {
        self.negate.contains_key(w) || w.contains("n't")
    }

    fn in_lex(&self, w: &str) -> bool {
        self.lexicon.contains_key(w)
    }

    fn scalar_inc_dec(&self, word: &str, lower: &str, valence: f64, cap_diff: bool) -> f64 {
        let Some(&b) = self.boosters.get(lower) else {
            return 0.0;
        };
        let mut scalar = if valence < 0.0 { -b } else { b };
        if cap_diff && is_upper(word) {
            if valence > 0.0 {
                scalar += C_INCR
            } else {
                scalar -= C_INCR
            }
        }
        scalar
    }

    /// VADER compound score in -1..1.
    fn compound(&self, text: &str) -> f64 {
        // Emoji -> textual description (only non-ASCII text can contain one).
        let replaced;
        let text = if text.is_ascii() {
            text.trim()
        } else {
            let mut out = String::with_capacity(text.len() + 16);
            let mut prev_space = true;
            for c in text.chars() {
                if let Some(d) = self.emoji.get(&c) {
                    if !prev_space {
                        out.push(' ');
                    }
                    out.push_str(d);
                    prev_space = false;
                } else {
                    out.push(c);
                    prev_space = c == ' ';
                }
            }
            replaced = out;
            replaced.trim()
        };
        let words: Vec<&str> = text.split_whitespace().map(strip_punc_if_word).collect();
        if words.is_empty() {
            return 0.0;
        }
        let lw: Vec<String> = words.iter().map(|w| w.to_lowercase()).collect();
        let n = words.len();
        let allcaps = words.iter().filter(|w| is_upper(w)).count();
        let cap_diff = allcaps > 0 && allcaps < n;

        let mut sent = vec![0.0f64; n];
        for i in 0..n {
            let item = lw[i].as_str();
            if self.boosters.contains_key(item) {
                continue;
            }
            if i + 1 < n && item == "kind" && lw[i + 1] == "of" {
                continue;
            }
            sent[i] = self.valence(&words, &lw, i, cap_diff);
        }
        // "but" check: dampen before, emphasise after the first "but".
        if let Some(bi) = lw.iter().position(|w| w == "but") {
            for (si, s) in sent.iter_mut().enumerate() {
                if si < bi {
                    *s *= 0.5;
                } else if si > bi {
                    *s *= 1.5;
                }
            }
        }
        let mut sum: f64 = sent.iter().sum();
        let ep = text.bytes().filter(|b| *b == b'!').count().min(4) as f64 * 0.292;
        let qc = text.bytes().filter(|b| *b == b'?').count();
        let qm = if qc > 3 {
            0.96
        } else if qc > 1 {
            qc as f64 * 0.18
        } else {
            0.0
        };
        if sum > 0.0 {
            sum += ep + qm;
        } else if sum < 0.0 {
            sum -= ep + qm;
        }
        (sum / (sum * sum + 15.0).sqrt()).clamp(-1.0, 1.0)
    }

    fn valence(&self, words: &[&str], lw: &[String], i: usize, cap_diff: bool) -> f64 {
        let item = lw[i].as_str();
        let Some(&base) = self.lexicon.get(item) else {
            return 0.0;
        };
        let n = lw.len();
        let mut valence = base;
        if item == "no" && i + 1 < n && self.in_lex(&lw[i + 1]) {
            valence = 0.0;
        }
        if (i > 0 && lw[i - 1] == "no")
            || (i > 1 && lw[i - 2] == "no")
            || (i > 2 && lw[i - 3] == "no" && (lw[i - 1] == "or" || lw[i - 1] == "nor"))
        {
            valence = base * N_SCALAR;
        }
        if cap_diff && is_upper(words[i]) {
            if valence > 0.0 {
                valence += C_INCR
            } else {
                valence -= C_INCR
            }
        }
        for start_i in 0..3 {
            if i > start_i && !self.in_lex(&lw[i - start_i - 1]) {
                let j = i - start_i - 1;
                let mut s = self.scalar_inc_dec(words[j], &lw[j], valence, cap_diff);
                if start_i == 1 {
                    s *= 0.95;
                } else if start_i == 2 {
                    s *= 0.9;
                }
                valence += s;
                valence = self.negation_check(valence, lw, start_i, i);
                if start_i == 2 {
                    valence = self.special_idioms_check(valence, lw, i);
                }
            }
        }
        // "least" check
        if i > 1 && lw[i - 1] == "least" && !self.in_lex(&lw[i - 1]) {
            if lw[i - 2] != "at" && lw[i - 2] != "very" {
                valence *= N_SCALAR;
            }
        } else if i > 0 && lw[i - 1] == "least" && !self.in_lex(&lw[i - 1]) {
            valence *= N_SCALAR;
        }
        valence
    }

    fn negation_check(&self, valence: f64, lw: &[String], start_i: usize, i: usize) -> f64 {
        let so_this = |w: &str| w == "so" || w == "this";
        match start_i {
            0 => {
                if self.negated(&lw[i - 1]) {
                    return valence * N_SCALAR;
                }
            }
            1 => {
                if lw[i - 2] == "never" && so_this(&lw[i - 1]) {
                    return valence * 1.25;
                } else if lw[i - 2] == "without" && lw[i - 1] == "doubt" {
                    return valence;
                } else if self.negated(&lw[i - 2]) {
                    return valence * N_SCALAR;
                }
            }
            _ => {
                // Same operator precedence as the reference implementation.
                if (lw[i - 3] == "never" && so_this(&lw[i - 2])) || so_this(&lw[i - 1]) {
                    return valence * 1.25;
                } else if lw[i - 3] == "without" && (lw[i - 2] == "doubt" || lw[i - 1] == "doubt") {
                    return valence;
                } else if self.negated(&lw[i - 3]) {
                    return valence * N_SCALAR;
                }
            }
        }
        valence
    }

    fn special_idioms_check(&self, mut valence: f64, lw: &[String], i: usize) -> f64 {
        let n = lw.len();
        let seq = |a: usize, b: usize| -> Option<f64> {
            SPECIAL_CASES.iter().find_map(|(k, v)| {
                (k.len() == b - a && k.iter().zip(&lw[a..b]).all(|(x, y)| *x == y.as_str()))
                    .then_some(*v)
            })
        };
        // onezero, twoonezero, twoone, threetwoone, threetwo (first hit wins)
        for (a, b) in [
            (i - 1, i + 1),
            (i - 2, i + 1),
            (i - 2, i),
            (i - 3, i),
            (i - 3, i - 1),
        ] {
            if let Some(v) = seq(a, b) {
                valence = v;
                break;
            }
        }
        if n - 1 > i
            && let Some(v) = seq(i, i + 2)
        {
            valence = v;
        }
        if n - 1 > i + 1
            && let Some(v) = seq(i, i + 3)
        {
            valence = v;
        }
        // booster/dampener n-grams: threetwoone, threetwo, twoone
        for (a, b) in [(i - 3, i), (i - 3, i - 1), (i - 2, i)] {
            let joined = lw[a..b].join(" ");
            if let Some(v) = self.boosters.get(joined.as_str()) {
                valence += v;
            }
        }
        valence
    }
}

// ---------------------------------------------------------------------------------------------
// Service-dialogue cues
// ---------------------------------------------------------------------------------------------

/// Cue identifiers. Names are what [`TurnEstimate::cues`] reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
enum Cue {
    // customer-side, negative
    Reject = 0,
    Correction,
    Decline,
    Alternative,
    SoftCorrection,
    Persist,
    Repeat,
    Complaint,
    GaveUp,
    Shouting,
    // context (agent's previous message)
    AgentFailure,
    // neutral markers (reported for transparency, weight 0)
    Closing,
    // sentiment bands
    Positive,
    Negative,
}

impl Cue {
    fn name(self) -> &'static str {
        match self {
            Cue::Reject => "reject",
            Cue::Correction => "correction",
            Cue::Decline => "decline",
            Cue::Alternative => "alternative",
            Cue::SoftCorrection => "soft_correction",
            Cue::Persist => "persist",
            Cue::Repeat => "repeat",
            Cue::Complaint => "complaint",
            Cue::GaveUp => "gave_up",
            Cue::Shouting => "shouting",
            Cue::AgentFailure => "agent_failure",
            Cue::Closing => "closing",
            Cue::Positive => "positive_sentiment",
            Cue::Negative => "negative_sentiment",
        }
    }
    fn bit(self) -> u32 {
        1 << (self as u8)
    }
}

// Phrase lists are matched on normalised text: lower case, contractions expanded
// ("couldn't" -> "could not", "that's" -> "that is", "I'm" -> "i am"), punctuation other than
// , . ; ? ! removed, single spaces. A phrase matches whole words; a trailing '*' makes the last
// word a prefix ("frustrat*" matches "frustrated", "frustrating").

/// Correction of something the agent got wrong.
#[rustfmt::skip]
const CORRECTION: &[&str] = &[
    "is not right", "was not right", "not right .", "not right !", "not correct", "incorrect",
    "wrong", "mistake", "mistaken", "i said", "i meant", "i asked for", "i asked you", "not what i",
    "that is not it", "misunderstood", "misheard", "i already said", "i already told",
    "i already gave", "i already mentioned", "as i said", "like i said", "i told you",
    "not the one i", "that is not what",
];
/// Declining the agent's proposal in so many words.
#[rustfmt::skip]
const DECLINE: &[&str] = &[
    "not interested", "do not want", "do not like", "not for me", "would not work", "will not work",
    "does not work for me", "not suitable", "not good enough", "too expensive", "too early",
    "too late", "too far", "too much", "too long", "too slow", "does not suit", "not what i want",
    "not what i need", "not what i am looking for", "i do not think so", "do not really like",
    "do not really want", "not really",
];
/// Asking for something else than what was offered.
#[rustfmt::skip]
const ALTERNATIVE: &[&str] = &[
    "another", "something else", "anything else ?", "any other", "any others", "some other",
    "other options", "other ones", "different one", "different option", "something different",
    "more options", "keep looking", "keep searching", "keep trying", "look again", "search again",
    "check again", "try again", "what else", "what other", "other choices", "other suggestions",
    "alternatives", "alternative", "someone else", "somebody else", "somewhere else", "elsewhere",
    "anyone else", "anywhere else",
];
/// Softer correction markers ("No, I actually want ...", "... instead").
#[rustfmt::skip]
const SOFT_CORRECTION: &[&str] = &[
    "actually", "instead", "rather", "change it to", "i need it to be",
];
/// The problem persists / the customer has to ask again.
#[rustfmt::skip]
const PERSIST: &[&str] = &[
    "again", "still", "once more", "one more time", "repeat", "for the second time",
    "for the third time", "yet again",
];
/// Complaints about the service that a general-purpose lexicon does not score
/// (single emotion words such as "frustrated", "useless", "terrible" are left to VADER).
#[rustfmt::skip]
const COMPLAINT: &[&str] = &[
    "not working", "does not work", "did not work", "is not working", "never mind", "nevermind",
    "forget it", "not helpful", "no help", "waste of time", "wasting my time", "how many times",
    "real person", "human being", "speak to a", "talk to a", "speak with a", "talk to someone",
    "speak to someone", "your manager", "a manager", "supervisor", "not listening",
    "you do not understand", "does not understand", "makes no sense", "give up", "still waiting",
    "still not", "still no", "still have not", "already tried", "what is wrong with",
    "are you kidding", "you are not helping", "not helping", "not satisfied", "not happy",
    "unacceptable", "complain*", "this is a joke", "for nothing", "do you even", "been waiting",
    "keep waiting", "on hold for", "no response", "no reply", "not resolved", "not been resolved",
    "not fixed", "have not received", "never received", "did not receive", "yet to receive",
    "where is my", "cancel my account", "cancel my subscription", "close my account",
];
/// Customer closes the conversation.
#[rustfmt::skip]
const CLOSURE: &[&str] = &[
    "that is all", "that will be all", "that is everything", "that will be everything",
    "that is it", "nothing else", "i am done", "i am good", "no thanks", "no thank you",
    "no , thanks", "no , thank you", "bye", "goodbye", "good bye", "that should be all",
    "that would be all", "all for now", "not now", "not right now", "maybe later", "not today",
    "not yet",
];
/// Agent reports failure, unavailability or apologises.
#[rustfmt::skip]
const AGENT_FAILURE: &[&str] = &[
    "sorry", "apologi*", "unfortunately", "unable", "could not", "can not", "not able", "failed",
    "fail", "no results", "no result", "not available", "unavailable", "did not find",
    "do not have", "does not have", "nothing matching", "nothing that matches", "no matches",
    "not possible", "an error", "went wrong", "not find any", "no availability", "is not allowed",
    "are not allowed", "there are no", "there is no", "none available",
];
/// Agent offers to close ("anything else?"): a bare "no" after it is closure, not rejection.
#[rustfmt::skip]
const AGENT_CLOSURE_OFFER: &[&str] = &[
    "anything else", "something else", "anything more", "any other", "any more help", "further",
    "other questions", "another question", "more questions", "else i can", "else can i",
    "is that all", "will that be all", "is that everything", "more help", "other help",
    "help with anything",
];

/// Answer particles that reject when they open a customer message.
const NEG_PARTICLES: &[&str] = &["no", "nope", "nah", "negative", "not", "nay"];
/// Interjections that may precede the particle ("oh no", "sorry, no", "well, no").
#[rustfmt::skip]
const INTERJECTIONS: &[&str] = &[
    "oh", "um", "uh", "umm", "well", "sorry", "hmm", "ah", "er", "ugh",
];

/// Function words ignored when looking for repetitions.
#[rustfmt::skip]
const STOPWORDS: &[&str] = &[
    "a", "an", "the", "i", "me", "my", "you", "your", "it", "is", "are", "am", "be", "to", "of",
    "in", "on", "at", "for", "and", "or", "but", "with", "that", "this", "can", "could", "would",
    "will", "please", "do", "does", "did", "not", "no", "yes", "want", "like", "need", "some",
    "there", "what", "how", "have", "has", "we", "us", "our", "so", "just", "also", "any", "get",
    "find", "from", "about", "then", "okay", "ok", "thanks", "thank", "was", "were", "they", "them",
    "one", "if", "by", "as", "its", "would", "should", "let", "know",
];

/// Cues that mark the customer as not (yet) satisfied.
const NEGATIVE_CUES: u32 = (1 << Cue::Reject as u8)
    | (1 << Cue::Correction as u8)
    | (1 << Cue::Decline as u8)
    | (1 << Cue::Alternative as u8)
    | (1 << Cue::SoftCorrection as u8)
    | (1 << Cue::Persist as u8)
    | (1 << Cue::Repeat as u8)
    | (1 << Cue::Complaint as u8)
    | (1 << Cue::GaveUp as u8)
    | (1 << Cue::Shouting as u8);

// ---------------------------------------------------------------------------------------------
// Public API
// ---------------------------------------------------------------------------------------------

/// The estimator every conversation shares, built on first use (about 2 ms).
pub fn shared() -> &'static Estimator {
    static SHARED: std::sync::OnceLock<Estimator> = std::sync::OnceLock::new();
    SHARED.get_or_init(Estimator::new)
}

/// Compiled lexicon and phrase automata; build once, share.
pub struct Estimator {
    vader: Vader,
    customer_ac: AhoCorasick,
    customer_cue: Vec<Cue>,
    agent_ac: AhoCorasick,
    agent_cue: Vec<Cue>,
    params: Params,
}

/// The estimate for one customer message.
#[derive(Clone, Debug, PartialEq)]
pub struct TurnEstimate {
    /// VADER compound, -1..1, of the message without its opening answer particle ("No, ...",
    /// "Sorry, ..."; that word is scored by a cue instead). [`Estimator::sentiment`] gives the
    /// plain VADER score of a whole text.
    pub sentiment: f32,
    /// Satisfaction estimate, 1..5 (3 = neutral; below 2.5 = dissatisfied).
    pub estimate: f32,
    /// Names of the signals that contributed, in a fixed order: the cues of FORMULA.md,
    /// "agent_failure", "positive_sentiment" / "negative_sentiment" (|s'| >= 0.05 and counted),
    /// and the weight-0 marker "closing" (the customer is closing the conversation or deferring).
    pub cues: Vec<&'static str>,
}

/// Running state of one conversation.
#[derive(Clone, Debug, Default)]
pub struct Dialogue {
    /// Cue bits of the last agent message since the last customer message.
    agent_bits: u32,
    /// Content words of the previous customer messages (most recent last, at most 3 kept).
    history: Vec<Vec<String>>,
    n: u32,
    sum: f32,
    min: f32,
    mix: f32,
}

fn build_ac(patterns: &[String]) -> AhoCorasick {
    AhoCorasickBuilder::new()
        .match_kind(MatchKind::Standard)
        .build(patterns)
        .expect("cue automaton")
}

/// " phrase " for whole-word matching; "word*" -> " word" (prefix match).
fn pattern(p: &str) -> String {
    match p.strip_suffix('*') {
        Some(stem) => format!(" {stem}"),
        None => format!(" {p} "),
    }
}

/// Expand one lower-case word token into normalised words.
fn push_expanded(out: &mut String, w: &str) {
    let exp: &str = match w {
        "can't" | "cant" | "cannot" => "can not",
        "won't" => "will not",
        "shan't" => "shall not",
        "ain't" => "is not",
        "dont" => "do not",
        "didnt" => "did not",
        "doesnt" => "does not",
        "isnt" => "is not",
        "wasnt" => "was not",
        "werent" => "were not",
        "arent" => "are not",
        "couldnt" => "could not",
        "wouldnt" => "would not",
        "shouldnt" => "should not",
        "havent" => "have not",
        "hasnt" => "has not",
        "thats" => "that is",
        "whats" => "what is",
        "im" => "i am",
        "ive" => "i have",
        "youre" => "you are",
        "let's" => "let us",
        _ => "",
    };
    if !exp.is_empty() {
        out.push_str(exp);
        out.push(' ');
        return;
    }
    if let Some(stem) = w.strip_suffix("n't") {
        out.push_str(stem);
        out.push_str(" not ");
        return;
    }
    for (suf, rep) in [
        ("'m", "am"),
        ("'re", "are"),
        ("'ve", "have"),
        ("'ll", "will"),
        ("'d", "would"),
    ] {
        if let Some(stem) = w.strip_suffix(suf)
            && !stem.is_empty()
        {
            out.push_str(stem);
            out.push(' ');
            out.push_str(rep);
            out.push(' ');
            return;
        }
    }
    if let Some(stem) = w.strip_suffix("'s") {
        if matches!(
            stem,
            "that" | "it" | "what" | "there" | "here" | "he" | "she" | "who" | "where" | "how"
        ) {
            out.push_str(stem);
            out.push_str(" is ");
            return;
        }
        out.push_str(stem);
        out.push(' ');
        return;
    }
    out.push_str(w.trim_matches('\''));
    out.push(' ');
}

/// Normalised form used for phrase matching: " w1 w2 , w3 ? " (leading and trailing space;
/// the punctuation marks , . ; ? ! are kept as tokens so that phrases do not match across
/// clauses: "No, help me find ..." is not "no help").
fn normalise(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 8);
    out.push(' ');
    let mut word = String::new();
    let flush = |word: &mut String, out: &mut String| {
        if !word.is_empty() {
            push_expanded(out, word);
            word.clear();
        }
    };
    for c in text.chars() {
        let c = match c {
            '\u{2019}' | '\u{2018}' | '`' | '\u{00b4}' => '\'',
            _ => c,
        };
        if c.is_alphanumeric() || (c == '\'' && !word.is_empty()) {
            for l in c.to_lowercase() {
                word.push(l);
            }
        } else {
            flush(&mut word, &mut out);
            if matches!(c, '?' | '!' | '.' | ';' | ',') {
                out.push(c);
                out.push(' ');
            }
        }
    }
    flush(&mut word, &mut out);
    out
}

impl Default for Estimator {
    fn default() -> Self {
        Estimator::new()
    }
}

impl Estimator {
    /// Build with the documented weights.
    pub fn new() -> Estimator {
        Estimator::with_params(Params::default())
    }

    /// Build with other weights (for evaluation harnesses).
    pub fn with_params(params: Params) -> Estimator {
        let customer: &[(&[&str], Cue)] = &[
            (CORRECTION, Cue::Correction),
            (DECLINE, Cue::Decline),
            (ALTERNATIVE, Cue::Alternative),
            (SOFT_CORRECTION, Cue::SoftCorrection),
            (PERSIST, Cue::Persist),
            (COMPLAINT, Cue::Complaint),
            (CLOSURE, Cue::Closing),
        ];
        let agent: &[(&[&str], Cue)] = &[
            (AGENT_FAILURE, Cue::AgentFailure),
            (AGENT_CLOSURE_OFFER, Cue::Closing),
        ];
        let compile = |lists: &[(&[&str], Cue)]| {
            let mut pats = Vec::new();
            let mut cues = Vec::new();
            for &(list, cue) in lists {
                for p in list.iter() {
                    pats.push(pattern(p));
                    cues.push(cue);
                }
            }
            (build_ac(&pats), cues)
        };
        let (customer_ac, customer_cue) = compile(customer);
        let (agent_ac, agent_cue) = compile(agent);
        Estimator {
            vader: Vader::new(),
            customer_ac,
            customer_cue,
            agent_ac,
            agent_cue,
            params,
        }
    }

    /// The weights in use.
    pub fn params(&self) -> Params {
        self.params
    }

    /// VADER compound score of `text`, -1 (negative) .. 1 (positive).
    pub fn sentiment(&self, text: &str) -> f32 {
        self.vader.compound(text) as f32
    }

    fn match_bits(&self, ac: &AhoCorasick, cues: &[Cue], norm: &str) -> u32 {
        let mut bits = 0;
        for m in ac.find_overlapping_iter(norm) {
            bits |= cues[m.pattern().as_usize()].bit();
        }
        bits
    }

    /// How does the customer message open? With a rejecting answer particle ("No, ...",
    /// "Nope", "Oh no, ..."), with an apology ("Sorry, I need ..."), or otherwise.
    fn opener(&self, norm: &str) -> Opener {
        let mut toks = norm.split_ascii_whitespace();
        let mut first = toks.next();
        let mut apology = false;
        if first.is_some_and(|w| INTERJECTIONS.contains(&w)) {
            apology = first == Some("sorry");
            first = toks.next();
        }
        let Some(first) = first else {
            return Opener::Other;
        };
        if !NEG_PARTICLES.contains(&first) {
            // "Sorry, I need two tickets": the customer apologises for correcting the agent.
            return if apology && first != "." {
                Opener::Apology
            } else {
                Opener::Other
            };
        }
        // Litotes ("not bad", "no problem", "not too shabby") is praise, not rejection; "not
        // sure" is hesitation.
        let next = match toks.next() {
            Some("too" | "so") => toks.next(),
            other => other,
        };
        let litotes = next.is_some_and(|next| {
            (first == "not" && next == "sure")
                || self.vader.lexicon.get(next).is_some_and(|v| *v < 0.0)
        });
        if litotes {
            Opener::Other
        } else {
            Opener::Particle
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Opener {
    Particle,
    Apology,
    Other,
}

/// The message without its opening interjection / answer particle ("No, that's all" ->
/// "that's all"): that word is a dialogue move, scored by the rejection / closing cue, so it is
/// not scored again by the lexicon.
fn strip_opener(text: &str) -> &str {
    let mut rest = text;
    for _ in 0..2 {
        let t = rest.trim_start_matches(|c: char| !c.is_alphanumeric());
        let end = t
            .find(|c: char| !c.is_alphanumeric() && c != '\'' && c != '\u{2019}')
            .unwrap_or(t.len());
        let w = t[..end].to_lowercase();
        if INTERJECTIONS.contains(&w.as_str()) || NEG_PARTICLES.contains(&w.as_str()) {
            rest = &t[end..];
            if NEG_PARTICLES.contains(&w.as_str()) {
                break;
            }
        } else {
            break;
        }
    }
    rest.trim_start_matches(|c: char| {
        c.is_whitespace() || matches!(c, ',' | '.' | '!' | ';' | ':' | '-')
    })
}

/// At least three alphabetic words and every letter in capitals.
fn is_shouting(text: &str) -> bool {
    let mut words = 0;
    for w in text.split_whitespace() {
        let mut letters = 0;
        for c in w.chars() {
            if c.is_lowercase() {
                return false;
            }
            if c.is_alphabetic() {
                letters += 1;
            }
        }
        if letters >= 2 {
            words += 1;
        }
    }
    words >= 3
}

fn content_words(norm: &str) -> Vec<String> {
    let mut v: Vec<String> = norm
        .split_ascii_whitespace()
        .filter(|w| w.len() > 2 && w.chars().next().is_some_and(|c| c.is_alphanumeric()))
        .filter(|w| !STOPWORDS.contains(w))
        .map(str::to_owned)
        .collect();
    v.sort_unstable();
    v.dedup();
    v
}

impl Dialogue {
    pub fn new() -> Dialogue {
        Dialogue::default()
    }

    /// Record an agent message (only its cues are kept).
    pub fn agent(&mut self, est: &Estimator, text: &str) {
        let norm = normalise(text);
        // Several agent messages in a row: the latest one sets the context, but a failure
        // reported in any of them since the customer last spoke still counts.
        let bits = est.match_bits(&est.agent_ac, &est.agent_cue, &norm);
        self.agent_bits = (self.agent_bits & Cue::AgentFailure.bit()) | bits;
    }

    /// Estimate the satisfaction expressed by a customer message and update the state.
    pub fn customer(&mut self, est: &Estimator, text: &str) -> TurnEstimate {
        let p = est.params;
        let norm = normalise(text);
        let mut bits = est.match_bits(&est.customer_ac, &est.customer_cue, &norm);
        let agent_closure_offer = self.agent_bits & Cue::Closing.bit() != 0;
        let agent_failure = self.agent_bits & Cue::AgentFailure.bit() != 0;

        let opener = est.opener(&norm);
        match opener {
            Opener::Particle if agent_closure_offer => bits |= Cue::Closing.bit(),
            Opener::Particle => bits |= Cue::Reject.bit(),
            Opener::Apology => bits |= Cue::SoftCorrection.bit(),
            Opener::Other => {}
        }
        // The opening particle is a dialogue move, scored by the cue above, not by the lexicon.
        let sentiment = if opener == Opener::Other {
            est.vader.compound(text)
        } else {
            est.vader.compound(strip_opener(text))
        } as f32;
        // "anything else?" asked by the agent and answered with "something else" is not a
        // request for alternatives.
        if agent_closure_offer
            && bits & Cue::Alternative.bit() != 0
            && bits & Cue::Closing.bit() != 0
        {
            bits &= !Cue::Alternative.bit();
        }
        // Closing right after a failure: the customer leaves with the problem unsolved.
        if agent_failure && bits & Cue::Closing.bit() != 0 {
            bits |= Cue::GaveUp.bit();
        }
        // Repetition of one of the customer's last messages (a substantive request, >= 5
        // content words, >= 80 % of them already used).
        let words = content_words(&norm);
        if words.len() >= 5 {
            let repeated = self.history.iter().any(|prev| {
                let shared = words
                    .iter()
                    .filter(|w| prev.binary_search(w).is_ok())
                    .count();
                shared as f32 >= 0.8 * words.len() as f32
            });
            if repeated {
                bits |= Cue::Repeat.bit();
            }
        }
        // Shouting: three or more words, all in capitals, and nothing positive said.
        if sentiment <= 0.0 && is_shouting(text) {
            bits |= Cue::Shouting.bit();
        }
        if agent_failure {
            bits |= Cue::AgentFailure.bit();
        }
        if sentiment >= 0.05 {
            bits |= Cue::Positive.bit();
        } else if sentiment <= -0.05 {
            bits |= Cue::Negative.bit();
        }

        let r = p.w_reject;
        // Politeness inside a rejection or complaint ("No, please play it on the TV") is not
        // satisfaction: positive sentiment counts (and is reported) only when no
        // dissatisfaction cue fired.
        let unhappy = bits & NEGATIVE_CUES != 0;
        let counted_sentiment = if unhappy {
            bits &= !Cue::Positive.bit();
            sentiment.min(0.0)
        } else {
            sentiment
        };
        let has = |c: Cue| bits & c.bit() != 0;
        let mut score = 3.0 + p.w_sent * counted_sentiment;
        // Customer does not accept what the agent did: rejection/correction/decline count once
        // at full strength (they usually co-occur: "No, that's wrong, I don't want it"); a
        // correction on top of a rejection adds half. A bare rejection worded as a polite
        // deferral ("No thanks", "Not right now", "Maybe later") declines an offer without
        // blaming anyone: half strength.
        if has(Cue::Correction) || has(Cue::Decline) {
            score -= r;
        } else if has(Cue::Reject) {
            score -= if has(Cue::Closing) { 0.5 * r } else { r };
        }
        if has(Cue::Correction) && (has(Cue::Reject) || has(Cue::Decline)) {
            score -= 0.5 * r;
        }
        if has(Cue::Alternative) {
            score -= 0.5 * r;
        }
        if has(Cue::SoftCorrection) {
            score -= 0.5 * r;
        }
        if has(Cue::Persist) {
            score -= 0.5 * r;
        }
        if has(Cue::Repeat) {
            score -= 0.5 * r;
        }
        if has(Cue::Complaint) {
            score -= 2.0 * r;
        }
        if has(Cue::GaveUp) {
            score -= r;
        }
        if has(Cue::Shouting) {
            score -= 0.5 * r;
        }

        if agent_failure {
            score -= p.w_fail;
        }
        let estimate = score.clamp(1.0, 5.0);

        // state update
        self.history.push(words);
        if self.history.len() > 3 {
            self.history.remove(0);
        }
        self.agent_bits = 0;
        self.n += 1;
        self.sum += estimate;
        self.min = if self.n == 1 {
            estimate
        } else {
            self.min.min(estimate)
        };
        self.mix = p.overall_mix;

        const ORDER: [Cue; 14] = [
            Cue::Reject,
            Cue::Correction,
            Cue::Decline,
            Cue::Alternative,
            Cue::SoftCorrection,
            Cue::Persist,
            Cue::Repeat,
            Cue::Complaint,
            Cue::GaveUp,
            Cue::Shouting,
            Cue::AgentFailure,
            Cue::Closing,
            Cue::Positive,
            Cue::Negative,
        ];
        let cues = ORDER
            .iter()
            .filter(|c| has(**c))
            .map(|c| c.name())
            .collect();
        TurnEstimate {
            sentiment,
            estimate,
            cues,
        }
    }

    /// Dialogue-level estimate so far (3.0 before any customer message):
    /// `(1 - mix) * mean + mix * min` of the turn estimates.
    pub fn overall(&self) -> f32 {
        if self.n == 0 {
            return 3.0;
        }
        let mean = self.sum / self.n as f32;
        ((1.0 - self.mix) * mean + self.mix * self.min).clamp(1.0, 5.0)
    }

    /// Number of customer messages seen.
    pub fn turns(&self) -> u32 {
        self.n
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn est() -> Estimator {
        Estimator::new()
    }

    /// Run a conversation given as (is_agent, text) and return the last customer estimate.
    fn last(e: &Estimator, turns: &[(bool, &str)]) -> TurnEstimate {
        let mut d = Dialogue::new();
        let mut out = None;
        for (agent, text) in turns {
            if *agent {
                d.agent(e, text);
            } else {
                out = Some(d.customer(e, text));
            }
        }
        out.expect("at least one customer message")
    }

    fn one(e: &Estimator, agent: &str, customer: &str) -> TurnEstimate {
        last(e, &[(true, agent), (false, customer)])
    }

    fn fired(t: &TurnEstimate, cue: &str) -> bool {
        t.cues.contains(&cue)
    }

    #[test]
    fn vader_matches_reference_implementation() {
        // Values printed by vaderSentiment 3.3.2 (Python), rounded to 4 decimals there.
        let e = est();
        for (text, want) in [
            ("VADER is smart, handsome, and funny.", 0.8316),
            (
                "The food was great but the service was horrible :(",
                -0.7935,
            ),
            ("I love it 😍", 0.802),
            ("Not bad at all", 0.431),
            ("No, thanks.", 0.4404),
            ("No thanks", -0.3412),
            ("Nope, that's not good.", 0.2594),
            ("I am NOT happy 😡 at all!!!", -0.5959),
            ("WHY??? Terrible!!!!", -0.7011),
            ("kind of bad", -0.5423),
            ("at least good", 0.4404),
            ("", 0.0),
        ] {
            let got = e.sentiment(text);
            assert!((got - want).abs() < 6e-5, "{text:?}: {got} vs {want}");
        }
    }

    #[test]
    fn clearly_positive_message() {
        let e = est();
        let t = one(
            &e,
            "Your table is booked for 7 pm.",
            "Perfect, thank you so much, that was really helpful!",
        );
        assert!(t.estimate > 3.5, "{t:?}");
        assert!(t.sentiment > 0.5);
        assert_eq!(t.cues, vec!["positive_sentiment"]);
    }

    #[test]
    fn clearly_negative_message() {
        let e = est();
        let t = one(
            &e,
            "Sorry, I could not process your request.",
            "This is ridiculous, it still doesn't work and I've been waiting for an hour!",
        );
        assert!(t.estimate < 2.0, "{t:?}");
        assert!(
            fired(&t, "complaint") && fired(&t, "agent_failure") && fired(&t, "negative_sentiment")
        );
    }

    #[test]
    fn mixed_message_politeness_does_not_hide_a_correction() {
        let e = est();
        let t = one(
            &e,
            "I booked the 9 am flight.",
            "Thanks, but that's not what I asked for.",
        );
        assert!(t.sentiment > 0.0, "VADER alone calls it positive: {t:?}");
        assert!(fired(&t, "correction"));
        assert!(t.estimate < 2.5, "{t:?}");
        // and genuinely mixed feelings stay near neutral
        let m = one(
            &e,
            "Here is your receipt.",
            "The app is great but the delivery was slow.",
        );
        assert!((2.5..=3.5).contains(&m.estimate), "{m:?}");
    }

    #[test]
    fn reject_after_proposal_but_not_after_closure_offer() {
        let e = est();
        let t = one(
            &e,
            "Shall I book the 5 pm table?",
            "No, I want a table at 7 pm.",
        );
        assert!(fired(&t, "reject") && t.estimate < 2.5, "{t:?}");
        // near miss: "no" answering "anything else?" is closing the conversation
        let c = one(
            &e,
            "Is there anything else I can help you with?",
            "No, that's all, thanks.",
        );
        assert!(
            !fired(&c, "reject") && fired(&c, "closing") && c.estimate >= 3.0,
            "{c:?}"
        );
        // near miss: litotes and hesitation
        for text in [
            "No problem at all.",
            "Not bad at all.",
            "Not sure, what do you recommend?",
        ] {
            let l = one(&e, "Shall I book it?", text);
            assert!(!fired(&l, "reject"), "{text}: {l:?}");
        }
    }

    #[test]
    fn correction_cue() {
        let e = est();
        let t = one(
            &e,
            "Booking a room for March 3rd.",
            "That's not right, I said the 4th.",
        );
        assert!(fired(&t, "correction") && t.estimate < 2.5, "{t:?}");
        // near miss: "not right now" declines an offer, it corrects nothing
        let n = one(&e, "Would you like to buy tickets?", "Not right now.");
        assert!(!fired(&n, "correction"), "{n:?}");
    }

    #[test]
    fn decline_cue() {
        let e = est();
        let t = one(
            &e,
            "The flight costs $900.",
            "That is too expensive for me.",
        );
        assert!(fired(&t, "decline") && t.estimate < 2.5, "{t:?}");
        let n = one(&e, "The flight costs $900.", "Is that with tax included?");
        assert!(!fired(&n, "decline") && n.estimate >= 2.5, "{n:?}");
    }

    #[test]
    fn alternative_cue() {
        let e = est();
        let t = one(
            &e,
            "I found the Hilton downtown.",
            "Can you find another hotel?",
        );
        assert!(fired(&t, "alternative") && t.estimate < 3.0, "{t:?}");
        let n = one(&e, "Anything else I can do?", "No, nothing else.");
        assert!(!fired(&n, "alternative"), "{n:?}");
    }

    #[test]
    fn soft_correction_cue() {
        let e = est();
        let t = one(
            &e,
            "Two tickets, right?",
            "Actually, make it three tickets.",
        );
        assert!(fired(&t, "soft_correction") && t.estimate < 3.0, "{t:?}");
        let s = one(
            &e,
            "Playing it on the TV.",
            "Sorry, play it on the kitchen speaker.",
        );
        assert!(fired(&s, "soft_correction"), "{s:?}");
        let n = one(&e, "How many tickets?", "Make it three tickets.");
        assert!(
            n.cues.iter().all(|c| *c != "soft_correction") && n.estimate >= 3.0,
            "{n:?}"
        );
    }

    #[test]
    fn persist_cue() {
        let e = est();
        let t = one(
            &e,
            "I have reset your router.",
            "It's still dropping the connection.",
        );
        assert!(fired(&t, "persist") && t.estimate < 3.0, "{t:?}");
        let n = one(
            &e,
            "I have reset your router.",
            "Will it keep the same password?",
        );
        assert!(!fired(&n, "persist"), "{n:?}");
    }

    #[test]
    fn repeat_cue() {
        let e = est();
        let ask = "I need to reset the password for my online banking account today";
        let t = last(
            &e,
            &[
                (false, ask),
                (true, "What is your date of birth?"),
                (false, ask),
            ],
        );
        assert!(fired(&t, "repeat") && t.estimate < 3.0, "{t:?}");
        let n = last(
            &e,
            &[
                (false, ask),
                (true, "Done."),
                (
                    false,
                    "Also update the mailing address on my credit card statement",
                ),
            ],
        );
        assert!(!fired(&n, "repeat"), "{n:?}");
    }

    #[test]
    fn complaint_cue() {
        let e = est();
        let t = one(&e, "Please hold.", "I want to speak to a manager.");
        assert!(fired(&t, "complaint") && t.estimate < 2.5, "{t:?}");
        let n = one(&e, "Which language?", "I want to speak Spanish.");
        assert!(!fired(&n, "complaint") && n.estimate >= 2.5, "{n:?}");
        let h = one(
            &e,
            "Which city?",
            "No, help me find a hotel in Paris first.",
        );
        assert!(!fired(&h, "complaint"), "{h:?}");
    }

    #[test]
    fn gave_up_after_failure_versus_plain_closing() {
        let e = est();
        let t = one(
            &e,
            "Sorry, I couldn't book it. Anything else?",
            "No, that's all.",
        );
        assert!(
            fired(&t, "gave_up") && fired(&t, "agent_failure") && t.estimate < 2.5,
            "{t:?}"
        );
        let n = one(
            &e,
            "Your booking is confirmed. Anything else?",
            "No, that's all.",
        );
        assert!(!fired(&n, "gave_up") && n.estimate >= 2.5, "{n:?}");
    }

    #[test]
    fn agent_failure_lowers_the_next_turn() {
        let e = est();
        let f = one(
            &e,
            "Unfortunately there are no flights that day.",
            "What about Friday?",
        );
        let n = one(
            &e,
            "There are three flights that day.",
            "What about Friday?",
        );
        assert!(fired(&f, "agent_failure") && !fired(&n, "agent_failure"));
        assert!(f.estimate < n.estimate, "{f:?} {n:?}");
        // the failure is remembered across several agent messages, and forgotten after a reply
        let mut d = Dialogue::new();
        d.agent(&e, "Sorry, that is unavailable.");
        d.agent(&e, "Would you like something else?");
        assert!(fired(&d.customer(&e, "Maybe Tuesday."), "agent_failure"));
        assert!(!fired(&d.customer(&e, "Or Wednesday."), "agent_failure"));
    }

    #[test]
    fn shouting_cue() {
        let e = est();
        let t = one(&e, "Please wait.", "WHY IS THIS NOT WORKING");
        assert!(fired(&t, "shouting") && t.estimate < 2.0, "{t:?}");
        let n = one(&e, "Done!", "THANK YOU SO MUCH");
        assert!(!fired(&n, "shouting") && n.estimate > 3.0, "{n:?}");
    }

    #[test]
    fn estimates_are_bounded() {
        let e = est();
        let texts = [
            "",
            "   ",
            "NO!!! WRONG AGAIN!!! THIS IS RIDICULOUS, USELESS, TERRIBLE, I WANT TO SPEAK TO A MANAGER, STILL NOT WORKING, I SAID NO, FORGET IT",
            "Absolutely perfect, wonderful, amazing, best service ever, thank you so much!!! 😍😍😍",
            "no no no no no no no no",
            "¿Qué? 日本語 😡😡😡 ﷽",
            "Sorry, no, that's wrong, I already told you, try again, still not working, never mind, bye",
        ];
        let mut d = Dialogue::new();
        assert_eq!(d.overall(), 3.0);
        for t in texts {
            d.agent(&e, "Sorry, I was unable to do that. Anything else?");
            let r = d.customer(&e, t);
            assert!((1.0..=5.0).contains(&r.estimate), "{t:?}: {r:?}");
            assert!((-1.0..=1.0).contains(&r.sentiment), "{t:?}: {r:?}");
            assert!((1.0..=5.0).contains(&d.overall()));
        }
        assert_eq!(d.turns(), texts.len() as u32);
    }

    #[test]
    fn overall_is_mean_blended_with_minimum() {
        let e = est();
        let mut d = Dialogue::new();
        let a = d.customer(&e, "Thank you, great!").estimate;
        d.agent(&e, "Shall I book it?");
        let b = d.customer(&e, "No, that's wrong.").estimate;
        let mix = e.params().overall_mix;
        let want = (1.0 - mix) * (a + b) / 2.0 + mix * a.min(b);
        assert!((d.overall() - want).abs() < 1e-6);
    }

    #[test]
    fn estimator_can_be_shared_across_threads() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<Estimator>();
        assert_send_sync::<Dialogue>();
    }

    #[test]
    fn normalisation_expands_contractions() {
        assert_eq!(
            normalise("That's NOT what I asked, it didn't work!"),
            " that is not what i asked , it did not work ! "
        );
        assert_eq!(
            normalise("I can’t, won't, cannot"),
            " i can not , will not , can not "
        );
    }
}
