//! Candidate pools: an index that makes a routing decision a lookup instead of a
//! scan of every agent.
//!
//! Waiting conversations fall into *classes*: the same channel, requirements (now and
//! originally), widened queues, language and strategy accept the same agents in the
//! same order. Each class keeps the agents who qualify for it (whatever their state)
//! and, ordered by the strategy's key, those who can take a conversation right now.
//! `sync` re-indexes the agents whose routing state changed since the last call (a
//! cheap fingerprint comparison per agent); `pick` walks a class's ordered members and
//! returns the first that the caller does not rule out. It chooses exactly as
//! `routing::pick` does; `Switchboard::check_invariants` compares the two.

use std::collections::{BTreeSet, HashMap};

use super::model::{Channel, Id, Skills};
use super::routing::{AgentSlot, Need, Strategy, channel_index};

/// What makes two waiting conversations accept the same agents in the same order.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ClassKey {
    pub channel: Channel,
    pub original: Skills,
    pub current: Skills,
    pub widened: Vec<Skills>,
    pub language: Option<Id>,
    pub strategy: Strategy,
    /// The queue whose satisfaction records order the agents (`None`: off).
    pub rating_queue: Option<Id>,
}

impl ClassKey {
    pub fn need(&self) -> (Need<'_>, Vec<&Skills>) {
        let widened: Vec<&Skills> = self.widened.iter().collect();
        (
            Need {
                channel: self.channel,
                original: &self.original,
                current: &self.current,
                widened: &[],
                language: self.language.as_deref(),
                rating_queue: self.rating_queue.as_deref(),
            },
            widened,
        )
    }
}

/// Strategy order, satisfaction record, idle time, then id: the same order
/// `routing::pick` chooses by.
type Rank = (u64, u64, u64, Id);

struct Class {
    key: ClassKey,
    /// Agents qualified for the class, whatever their state.
    qualified: Vec<Id>,
    /// Those who can take a conversation now, best first.
    ready: BTreeSet<Rank>,
    /// Each ready agent's current rank, to remove it when it changes.
    rank_of: HashMap<Id, Rank>,
}

/// Whether the routing-relevant parts of an agent differ from how they were indexed,
/// without allocating.
fn differs(seen: &AgentSlot, a: &AgentSlot) -> bool {
    seen.online != a.online
        || seen.state != a.state
        || seen.load != a.load
        || seen.capacity != a.capacity
        || seen.idle_since != a.idle_since
        || seen.skills != a.skills
        || seen.languages != a.languages
        || seen.ratings != a.ratings
}

#[derive(Default)]
pub struct Pools {
    classes: Vec<Class>,
    by_key: HashMap<ClassKey, usize>,
    /// Each agent as last indexed: a new class is built from these, so that it agrees
    /// with the classes indexed before it until the next `sync`.
    seen: HashMap<Id, AgentSlot>,
    /// Classes each agent qualifies for.
    member_of: HashMap<Id, Vec<usize>>,
}

fn qualifies(agent: &AgentSlot, key: &ClassKey) -> bool {
    let (need, widened) = key.need();
    let need = Need {
        widened: &widened,
        ..need
    };
    agent.qualifies(&need).is_some()
}

fn rank(agent: &AgentSlot, key: &ClassKey) -> Rank {
    let i = channel_index(key.channel);
    let first = match key.strategy {
        Strategy::LongestIdle | Strategy::RoundRobin => 0,
        Strategy::LeastOccupied => {
            // Share of capacity in use, scaled: smaller first.
            u64::from(agent.load[i]) * 1_000_000 / u64::from(agent.capacity[i].max(1))
        }
        Strategy::MostProficient => {
            let proficiency: u64 = key
                .original
                .keys()
                .map(|s| u64::from(agent.skills.get(s).copied().unwrap_or(0)))
                .sum();
            u64::MAX - proficiency
        }
    };
    let (rating, second) = match key.strategy {
        Strategy::RoundRobin => (0, 0),
        _ => (
            u64::from(u32::MAX - agent.rating(key.rating_queue.as_deref())),
            agent.idle_since,
        ),
    };
    (first, rating, second, agent.id.clone())
}

impl Pools {
    /// Re-indexes every agent whose routing state changed since the last call.
    pub fn sync<'a>(&mut self, agents: impl Iterator<Item = &'a AgentSlot>, vxc: bool) {
        for agent in agents {
            let changed = self.seen.get(&agent.id).is_none_or(|f| differs(f, agent));
            if changed {
                self.index(agent, vxc);
            }
        }
    }

    /// Indexes one agent now (after an offer changed their load mid-pass).
    pub fn index(&mut self, agent: &AgentSlot, vxc: bool) {
        let skills_changed = self
            .seen
            .get(&agent.id)
            .is_none_or(|f| f.skills != agent.skills || f.languages != agent.languages);
        if skills_changed {
            let classes: Vec<usize> = (0..self.classes.len())
                .filter(|&c| qualifies(agent, &self.classes[c].key))
                .collect();
            for class in &mut self.classes {
                class.qualified.retain(|id| *id != agent.id);
                if let Some(old) = class.rank_of.remove(&agent.id) {
                    class.ready.remove(&old);
                }
            }
            for &c in &classes {
                self.classes[c].qualified.push(agent.id.clone());
            }
            self.member_of.insert(agent.id.clone(), classes);
        }
        let member_of = self.member_of.get(&agent.id).cloned().unwrap_or_default();
        for c in member_of {
            let class = &mut self.classes[c];
            if let Some(old) = class.rank_of.remove(&agent.id) {
                class.ready.remove(&old);
            }
            if agent.can_take(class.key.channel, vxc) {
                let r = rank(agent, &class.key);
                class.ready.insert(r.clone());
                class.rank_of.insert(agent.id.clone(), r);
            }
        }
        self.seen.insert(agent.id.clone(), agent.clone());
    }

    /// Forgets an agent who was removed.
    pub fn remove(&mut self, agent_id: &Id) {
        self.seen.remove(agent_id);
        self.member_of.remove(agent_id);
        for class in &mut self.classes {
            class.qualified.retain(|id| id != agent_id);
            if let Some(old) = class.rank_of.remove(agent_id) {
                class.ready.remove(&old);
            }
        }
    }

    /// The class of `key`, made on first use and filled from the agents as last
    /// indexed (agents not indexed yet join it at the next `sync`).
    pub fn class(&mut self, key: ClassKey, vxc: bool) -> usize {
        if let Some(&c) = self.by_key.get(&key) {
            return c;
        }
        let c = self.classes.len();
        let mut class = Class {
            key: key.clone(),
            qualified: Vec::new(),
            ready: BTreeSet::new(),
            rank_of: HashMap::new(),
        };
        for agent in self.seen.values() {
            if qualifies(agent, &key) {
                class.qualified.push(agent.id.clone());
                self.member_of.entry(agent.id.clone()).or_default().push(c);
                if agent.can_take(key.channel, vxc) {
                    let r = rank(agent, &key);
                    class.ready.insert(r.clone());
                    class.rank_of.insert(agent.id.clone(), r);
                }
            }
        }
        self.classes.push(class);
        self.by_key.insert(key, c);
        c
    }

    /// The best ready agent of the class that `skip` does not rule out.
    /// `last`: the agent this queue offered to last (round robin starts after them).
    pub fn pick(&self, class: usize, last: Option<&Id>, skip: impl Fn(&Id) -> bool) -> Option<Id> {
        let class = &self.classes[class];
        let found = match (class.key.strategy, last) {
            (Strategy::RoundRobin, Some(last)) => class
                .ready
                .iter()
                .filter(|(_, _, _, id)| id > last)
                .chain(class.ready.iter())
                .find(|(_, _, _, id)| !skip(id)),
            _ => class.ready.iter().find(|(_, _, _, id)| !skip(id)),
        }?;
        Some(found.3.clone())
    }

    /// Whether every agent is indexed as they are now (no `sync` pending).
    pub fn is_fresh<'a>(&self, mut agents: impl Iterator<Item = &'a AgentSlot>) -> bool {
        agents.all(|a| self.seen.get(&a.id).is_some_and(|f| !differs(f, a)))
    }

    /// Whether some agent of the class can take a conversation now.
    pub fn has_ready(&self, class: usize) -> bool {
        !self.classes[class].ready.is_empty()
    }

    /// The key a class was made for.
    pub fn key(&self, class: usize) -> &ClassKey {
        &self.classes[class].key
    }

    /// Number of classes (for tests and metrics).
    pub fn len(&self) -> usize {
        self.classes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.classes.is_empty()
    }
}
