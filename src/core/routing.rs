//! Who gets offered a conversation: the pure selection rules.
//!
//! An agent is a candidate when they are online, available, have room on the channel
//! (a voice call may exclude chats), speak the conversation's language, have not
//! declined it lately, and are qualified: every required skill at its minimum level
//! for the conversation's current routing step, or qualified for a queue the step has
//! widened to (bullseye). Among candidates the queue's strategy chooses; ties go to
//! the agent idle longest, then to the smallest id, so every choice is deterministic.

use super::io::StepSettings;
use super::model::{AgentState, Channel, Id, Millis, Skills};

/// An agent as routing sees them.
#[derive(Clone, Debug)]
pub struct AgentSlot {
    pub id: Id,
    pub skills: Skills,
    pub languages: Vec<Id>,
    pub capacity: [u32; 2],
    /// Conversations held plus offers pending, per channel.
    pub load: [u32; 2],
    pub state: AgentState,
    pub online: bool,
    /// When the agent last became available or last took a conversation.
    pub idle_since: Millis,
    /// Satisfaction record per queue, 1-5 in hundredths (when routing prefers
    /// satisfied customers' agents).
    pub ratings: Vec<(Id, u32)>,
}

/// The rating of an agent with no record for a queue: the middle of the scale.
pub const NEUTRAL_RATING: u32 = 300;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Strategy {
    /// The agent idle the longest.
    LongestIdle,
    /// The agent with the smallest share of their capacity in use on the channel.
    LeastOccupied,
    /// The agent with the highest levels in the required skills.
    MostProficient,
    /// Agents in turn (by id), starting after the one offered last in this queue.
    RoundRobin,
}

/// Why an agent was chosen; the `offer` tells the agent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reason {
    /// Qualified for the queue's original requirements.
    Skill,
    /// The agent who last resolved this customer's contact.
    History,
    /// Qualified only because a routing step relaxed the requirements.
    Expanded,
    /// Sent by another agent.
    Transfer,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Skill => "skill",
            Reason::History => "history",
            Reason::Expanded => "expanded",
            Reason::Transfer => "transfer",
        }
    }
}

/// What a waiting conversation needs, at its current routing step.
#[derive(Clone, Copy, Debug)]
pub struct Need<'a> {
    pub channel: Channel,
    /// Requirements before any step relaxed them.
    pub original: &'a Skills,
    /// Requirements now.
    pub current: &'a Skills,
    /// Requirements of the queues the steps widened to: qualifying for any one will do.
    pub widened: &'a [&'a Skills],
    pub language: Option<&'a str>,
    /// Prefer agents with the better satisfaction record for this queue (after the
    /// strategy's own key; `None`: off).
    pub rating_queue: Option<&'a str>,
}

pub fn channel_index(channel: Channel) -> usize {
    match channel {
        Channel::Chat => 0,
        Channel::Voice => 1,
    }
}

impl AgentSlot {
    /// Online, available, and room on `channel`. With `voice_excludes_chat`, an agent
    /// on a call (or offered one) takes no chats.
    /// The agent's satisfaction record for `queue` (0 for all when `None`: off).
    pub fn rating(&self, queue: Option<&str>) -> u32 {
        let Some(queue) = queue else { return 0 };
        self.ratings
            .iter()
            .find(|(q, _)| &**q == queue)
            .map_or(NEUTRAL_RATING, |(_, r)| *r)
    }

    pub fn can_take(&self, channel: Channel, voice_excludes_chat: bool) -> bool {
        let i = channel_index(channel);
        self.online
            && self.state == AgentState::Available
            && self.load[i] < self.capacity[i]
            && !(voice_excludes_chat && channel == Channel::Chat && self.load[1] > 0)
    }

    pub fn speaks(&self, language: Option<&str>) -> bool {
        language.is_none_or(|l| self.languages.iter().any(|have| &**have == l))
    }

    /// `Some(reason)` when qualified for `need` (ignoring availability).
    pub fn qualifies(&self, need: &Need) -> Option<Reason> {
        if !self.speaks(need.language) {
            return None;
        }
        if qualified(&self.skills, need.original) {
            Some(Reason::Skill)
        } else if qualified(&self.skills, need.current)
            || need.widened.iter().any(|w| qualified(&self.skills, w))
        {
            Some(Reason::Expanded)
        } else {
            None
        }
    }

    fn proficiency(&self, need: &Need) -> u32 {
        need.original
            .keys()
            .map(|skill| u32::from(self.skills.get(skill).copied().unwrap_or(0)))
            .sum()
    }
}

/// Whether `have` meets every minimum level in `need`.
pub fn qualified(have: &Skills, need: &Skills) -> bool {
    need.iter()
        .all(|(name, min)| have.get(name).is_some_and(|level| level >= min))
}

/// A queue's requirements once `steps` (taken in order) have applied: lowered
/// minimum levels, dropped skills. Over all of a queue's steps: the least an agent
/// must have to be offered anything from it.
pub fn relaxed(base: &Skills, steps: &[StepSettings]) -> Skills {
    let mut need = base.clone();
    for s in steps {
        for (skill, level) in &s.min_levels {
            if let Some(min) = need.get_mut(skill) {
                *min = (*min).min(*level);
            }
        }
        for skill in &s.drop_skills {
            need.remove(skill);
        }
    }
    need
}

/// Merges requirement sets, keeping the higher minimum of a skill named twice.
pub fn merge(a: &Skills, b: &Skills) -> Skills {
    let mut out = a.clone();
    for (name, level) in b {
        let entry = out.entry(name.clone()).or_insert(*level);
        *entry = (*entry).max(*level);
    }
    out
}

/// Picks among the agents who can take `need` now, by `strategy`, skipping those
/// `skip` rules out. `last` is the agent this queue offered to last (round robin).
pub fn pick<'a>(
    agents: impl Iterator<Item = &'a AgentSlot>,
    need: &Need,
    strategy: Strategy,
    voice_excludes_chat: bool,
    last: Option<&Id>,
    skip: impl Fn(&Id) -> bool,
) -> Option<(&'a AgentSlot, Reason)> {
    let i = channel_index(need.channel);
    let candidates = agents.filter_map(|a| {
        if !a.can_take(need.channel, voice_excludes_chat) || skip(&a.id) {
            return None;
        }
        a.qualifies(need).map(|reason| (a, reason))
    });
    // The better satisfaction record first (when on), then idle longest, then id.
    let idle = |a: &AgentSlot, b: &AgentSlot| {
        b.rating(need.rating_queue)
            .cmp(&a.rating(need.rating_queue))
            .then_with(|| a.idle_since.cmp(&b.idle_since))
            .then_with(|| a.id.cmp(&b.id))
    };
    match strategy {
        Strategy::LongestIdle => candidates.min_by(|(a, _), (b, _)| idle(a, b)),
        Strategy::LeastOccupied => candidates.min_by(|(a, _), (b, _)| {
            // load/capacity compared without division: a.load * b.cap vs b.load * a.cap
            let left = u64::from(a.load[i]) * u64::from(b.capacity[i]);
            let right = u64::from(b.load[i]) * u64::from(a.capacity[i]);
            left.cmp(&right).then_with(|| idle(a, b))
        }),
        Strategy::MostProficient => candidates.min_by(|(a, _), (b, _)| {
            b.proficiency(need)
                .cmp(&a.proficiency(need))
                .then_with(|| idle(a, b))
        }),
        Strategy::RoundRobin => {
            // The first candidate after `last` in id order, wrapping around.
            let after = |a: &AgentSlot| last.is_some_and(|l| a.id > *l);
            candidates
                .min_by(|(a, _), (b, _)| after(b).cmp(&after(a)).then_with(|| a.id.cmp(&b.id)))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn agent(id: &str, idle_since: Millis, skills: &[(&str, u8)]) -> AgentSlot {
        AgentSlot {
            id: id.into(),
            skills: skills.iter().map(|(k, v)| (k.to_string(), *v)).collect(),
            languages: vec!["en".into()],
            capacity: [2, 1],
            load: [0, 0],
            state: AgentState::Available,
            online: true,
            idle_since,
            ratings: Vec::new(),
        }
    }

    fn skills(list: &[(&str, u8)]) -> Skills {
        list.iter().map(|(k, v)| (k.to_string(), *v)).collect()
    }

    fn need<'a>(original: &'a Skills, current: &'a Skills) -> Need<'a> {
        Need {
            channel: Channel::Chat,
            original,
            current,
            widened: &[],
            language: None,
            rating_queue: None,
        }
    }

    fn picked(
        all: &[AgentSlot],
        need: &Need,
        strategy: Strategy,
        last: Option<&str>,
    ) -> Option<(String, Reason)> {
        let last: Option<Id> = last.map(Into::into);
        pick(all.iter(), need, strategy, true, last.as_ref(), |_| false)
            .map(|(a, r)| (a.id.to_string(), r))
    }

    #[test]
    fn longest_idle_among_the_qualified_with_room() {
        let mut d = agent("d", 0, &[("billing", 5)]);
        d.load = [2, 0];
        let all = [
            agent("a", 3, &[("billing", 3)]),
            agent("b", 5, &[("billing", 1)]),
            agent("c", 1, &[]),
            d,
        ];
        let billing = skills(&[("billing", 2)]);
        let none = Skills::new();
        let got = picked(&all, &need(&billing, &billing), Strategy::LongestIdle, None);
        assert_eq!(got, Some(("a".into(), Reason::Skill)));
        let got = picked(&all, &need(&none, &none), Strategy::LongestIdle, None);
        assert_eq!(
            got,
            Some(("c".into(), Reason::Skill)),
            "d is full, c idles longest"
        );
    }

    #[test]
    fn a_relaxed_step_or_a_widened_queue_makes_the_choice_expanded() {
        let all = [
            agent("b", 5, &[("billing", 1)]),
            agent("s", 9, &[("sales", 4)]),
        ];
        let original = skills(&[("billing", 4)]);
        let relaxed = skills(&[("billing", 1)]);
        let got = picked(
            &all,
            &need(&original, &relaxed),
            Strategy::LongestIdle,
            None,
        );
        assert_eq!(got, Some(("b".into(), Reason::Expanded)));
        let sales = skills(&[("sales", 3)]);
        let widened = [&sales];
        let mut n = need(&original, &original);
        n.widened = &widened;
        let got = picked(&all, &n, Strategy::LongestIdle, None);
        assert_eq!(got, Some(("s".into(), Reason::Expanded)));
    }

    #[test]
    fn strategies_choose_as_named() {
        let mut a = agent("a", 1, &[("x", 2)]);
        a.load = [1, 0];
        let b = agent("b", 5, &[("x", 7)]);
        let c = agent("c", 3, &[("x", 4)]);
        let all = [a, b, c];
        let x = skills(&[("x", 1)]);
        let n = need(&x, &x);
        let name = |s, last| picked(&all, &n, s, last).map(|(id, _)| id);
        assert_eq!(name(Strategy::LongestIdle, None).as_deref(), Some("a"));
        assert_eq!(
            name(Strategy::LeastOccupied, None).as_deref(),
            Some("c"),
            "a is half full; c idles longer than b"
        );
        assert_eq!(name(Strategy::MostProficient, None).as_deref(), Some("b"));
        assert_eq!(name(Strategy::RoundRobin, None).as_deref(), Some("a"));
        assert_eq!(name(Strategy::RoundRobin, Some("a")).as_deref(), Some("b"));
        assert_eq!(
            name(Strategy::RoundRobin, Some("c")).as_deref(),
            Some("a"),
            "wraps around"
        );
    }

    #[test]
    fn away_offline_full_foreign_and_on_a_call_are_never_picked() {
        let mut away = agent("away", 0, &[]);
        away.state = AgentState::Away;
        let mut off = agent("off", 0, &[]);
        off.online = false;
        let mut on_call = agent("call", 0, &[]);
        on_call.load = [0, 1];
        let mut foreign = agent("fr", 0, &[]);
        foreign.languages = vec!["fr".into()];
        let all = [away, off, on_call, foreign];
        let none = Skills::new();
        let mut n = need(&none, &none);
        n.language = Some("en");
        assert_eq!(picked(&all, &n, Strategy::LongestIdle, None), None);
        n.channel = Channel::Voice;
        assert_eq!(
            picked(&all, &n, Strategy::LongestIdle, None),
            None,
            "call is at voice capacity"
        );
    }
}
