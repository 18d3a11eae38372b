//! Who gets offered a conversation. First strategy: among agents who are online,
//! available, skilled enough and have free capacity on the channel, the one idle the
//! longest (earliest `idle_since`; ties by id, so the choice is deterministic).

use super::model::{AgentState, Channel, Id, Millis, Skills};

/// An agent as routing sees them.
#[derive(Clone, Debug)]
pub struct AgentSlot {
    pub id: Id,
    pub skills: Skills,
    pub capacity: [u32; 2],
    /// Conversations held plus offers pending, per channel.
    pub load: [u32; 2],
    pub state: AgentState,
    pub online: bool,
    /// When the agent last became available or last took a conversation.
    pub idle_since: Millis,
}

pub fn channel_index(channel: Channel) -> usize {
    match channel {
        Channel::Chat => 0,
        Channel::Voice => 1,
    }
}

impl AgentSlot {
    pub fn can_take(&self, channel: Channel) -> bool {
        let i = channel_index(channel);
        self.online && self.state == AgentState::Available && self.load[i] < self.capacity[i]
    }
}

/// Whether `have` meets every minimum level in `need`.
pub fn qualified(have: &Skills, need: &Skills) -> bool {
    need.iter()
        .all(|(name, min)| have.get(name).is_some_and(|level| level >= min))
}

/// Picks the longest-idle agent that can take a conversation on `channel` needing
/// `queue_skills` and `skills`, skipping those `skip` says no to.
pub fn pick<'a>(
    agents: impl Iterator<Item = &'a AgentSlot>,
    channel: Channel,
    queue_skills: &Skills,
    skills: &Skills,
    skip: impl Fn(&Id) -> bool,
) -> Option<&'a AgentSlot> {
    agents
        .filter(|a| {
            a.can_take(channel)
                && qualified(&a.skills, queue_skills)
                && qualified(&a.skills, skills)
                && !skip(&a.id)
        })
        .min_by(|a, b| {
            a.idle_since
                .cmp(&b.idle_since)
                .then_with(|| a.id.cmp(&b.id))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn agent(id: &str, idle_since: Millis, skills: &[(&str, u8)]) -> AgentSlot {
        AgentSlot {
            id: id.into(),
            skills: skills.iter().map(|(k, v)| (k.to_string(), *v)).collect(),
            capacity: [2, 1],
            load: [0, 0],
            state: AgentState::Available,
            online: true,
            idle_since,
        }
    }

    fn skills(list: &[(&str, u8)]) -> Skills {
        list.iter().map(|(k, v)| (k.to_string(), *v)).collect()
    }

    #[test]
    fn picks_the_longest_idle_qualified_agent_with_capacity() {
        let mut a = agent("a", 10, &[("billing", 3)]);
        let b = agent("b", 5, &[("billing", 1)]);
        let c = agent("c", 1, &[]);
        let mut d = agent("d", 0, &[("billing", 5)]);
        d.load = [2, 0];
        a.idle_since = 3;
        let all = [a, b, c, d];
        let need = skills(&[("billing", 2)]);
        let got = pick(all.iter(), Channel::Chat, &Skills::new(), &need, |_| false);
        assert_eq!(got.map(|a| &*a.id), Some("a"));
        let got = pick(
            all.iter(),
            Channel::Chat,
            &Skills::new(),
            &Skills::new(),
            |_| false,
        );
        assert_eq!(got.map(|a| &*a.id), Some("c"), "d is full, c idles longest");
        let got = pick(all.iter(), Channel::Chat, &need, &Skills::new(), |id| {
            &**id == "a"
        });
        assert!(got.is_none());
    }

    #[test]
    fn away_offline_and_full_agents_are_never_picked() {
        let mut away = agent("away", 0, &[]);
        away.state = AgentState::Away;
        let mut off = agent("off", 0, &[]);
        off.online = false;
        let mut full = agent("full", 0, &[]);
        full.load = [0, 1];
        let all = [away, off, full];
        assert!(
            pick(
                all.iter(),
                Channel::Voice,
                &Skills::new(),
                &Skills::new(),
                |_| false
            )
            .is_none()
        );
    }
}
