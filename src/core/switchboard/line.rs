//! The waiting line, indexed three ways: in routing order (priority, then arrival),
//! by queue (for places in line), and by *lane* (queue and candidate class), so that a
//! routing pass looks only at conversations some agent could take now instead of
//! walking a long line of conversations nobody free can take.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::ops::Bound::Excluded;

use super::super::model::Id;

/// Key of the waiting line: higher priority first, then arrival order.
pub(super) type WaitKey = (Reverse<i32>, u64);

/// Where a waiting conversation is indexed for routing: its queue and its candidate
/// class. `class: None` holds cold transfers to a named agent, which may go to that
/// agent whatever the class, so every pass looks at them.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(super) struct Lane {
    pub queue: Id,
    pub class: Option<usize>,
}

/// The waiting line. It notes what must be told: whether anyone's place moved (for
/// the next sweep of places), which queues have a new first in line, and who joined
/// somewhere other than the back (told their place at once).
#[derive(Default)]
pub(super) struct Line {
    map: BTreeMap<WaitKey, (Id, Lane)>,
    lanes: HashMap<Lane, BTreeSet<WaitKey>>,
    queues: HashMap<Id, BTreeMap<WaitKey, Id>>,
    /// Someone's place moved since the last sweep.
    pub shifted: bool,
    /// Queues whose first in line changed since the last pass.
    pub new_front: Vec<Id>,
    /// Conversations that joined since the last pass (each must know its place).
    pub joined: Vec<WaitKey>,
}

impl Line {
    /// Puts `id` in line, noted in `joined`. A conversation joining at the back of its
    /// queue moves nobody; one joining ahead of others is noted in `shifted`.
    pub fn insert(&mut self, key: WaitKey, id: Id, lane: Lane) {
        let in_queue = self.queues.entry(lane.queue.clone()).or_default();
        let at_back = in_queue
            .last_key_value()
            .is_none_or(|(last, _)| key > *last);
        let at_front = in_queue
            .first_key_value()
            .is_none_or(|(first, _)| key < *first);
        if in_queue.insert(key, id.clone()).is_some() {
            return;
        }
        if at_front {
            self.new_front.push(lane.queue.clone());
        }
        if !at_back {
            self.shifted = true;
        }
        self.joined.push(key);
        self.lanes.entry(lane.clone()).or_default().insert(key);
        self.map.insert(key, (id, lane));
    }

    /// Takes `key` out of line; everyone behind it in its queue moves up.
    pub fn remove(&mut self, key: &WaitKey) -> Option<Id> {
        let (id, lane) = self.map.remove(key)?;
        if let Some(in_queue) = self.queues.get_mut(&lane.queue) {
            let was_front = in_queue.first_key_value().is_some_and(|(k, _)| k == key);
            in_queue.remove(key);
            if let Some((last, _)) = in_queue.last_key_value()
                && last > key
            {
                self.shifted = true;
                if was_front {
                    self.new_front.push(lane.queue.clone());
                }
            }
            if in_queue.is_empty() {
                self.queues.remove(&lane.queue);
            }
        }
        if let Some(in_lane) = self.lanes.get_mut(&lane) {
            in_lane.remove(key);
            if in_lane.is_empty() {
                self.lanes.remove(&lane);
            }
        }
        Some(id)
    }

    /// Moves a waiting conversation to another lane (its class changed); its place
    /// in line stays.
    pub fn relane(&mut self, key: &WaitKey, lane: Lane) {
        let Some((_, old)) = self.map.get_mut(key) else {
            return;
        };
        if *old == lane {
            return;
        }
        let old = std::mem::replace(old, lane.clone());
        if let Some(in_lane) = self.lanes.get_mut(&old) {
            in_lane.remove(key);
            if in_lane.is_empty() {
                self.lanes.remove(&old);
            }
        }
        self.lanes.entry(lane).or_default().insert(*key);
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn get(&self, key: &WaitKey) -> Option<&Id> {
        self.map.get(key).map(|(id, _)| id)
    }

    /// Every waiting conversation, in routing order.
    pub fn ids(&self) -> impl Iterator<Item = &Id> {
        self.map.values().map(|(id, _)| id)
    }

    pub fn in_queue(&self, queue: &Id) -> u32 {
        self.queues
            .get(queue)
            .map_or(0, |q| u32::try_from(q.len()).unwrap_or(u32::MAX))
    }

    /// Place of `key` in `queue` (1 = next): counts those ahead, unless it is last.
    pub fn place(&self, key: &WaitKey, queue: &Id) -> Option<u32> {
        let in_queue = self.queues.get(queue)?;
        let ahead = if in_queue.last_key_value().is_some_and(|(k, _)| k == key) {
            in_queue.len() - 1
        } else if in_queue.contains_key(key) {
            in_queue.range(..*key).count()
        } else {
            return None;
        };
        Some(u32::try_from(ahead + 1).unwrap_or(u32::MAX))
    }

    /// The places of `keys` in their queues, in `keys`' order (`None`: no longer in
    /// line): what `place` says of each, but each queue is counted once, up to its
    /// furthest key, however many keys it has: after a restart everyone joins the line
    /// at once, and counting each one's place from the front took the square of it
    /// (100,000 waiting: half a minute).
    pub fn places(&self, keys: &[WaitKey]) -> Vec<Option<u32>> {
        let mut places = vec![None; keys.len()];
        let mut by_queue: HashMap<&Id, Vec<usize>> = HashMap::new();
        for (i, key) in keys.iter().enumerate() {
            if let Some((_, lane)) = self.map.get(key) {
                by_queue.entry(&lane.queue).or_default().push(i);
            }
        }
        for (queue, mut indices) in by_queue {
            let Some(in_queue) = self.queues.get(queue) else {
                continue;
            };
            let last = in_queue.last_key_value().map(|(k, _)| *k);
            indices.sort_by_key(|&i| keys[i]);
            // The key counted last and its place.
            let mut counted: Option<(WaitKey, usize)> = None;
            for i in indices {
                let key = keys[i];
                let place = match counted {
                    _ if Some(key) == last => in_queue.len(),
                    Some((k, place)) if k == key => place,
                    Some((k, place)) => {
                        place + 1 + in_queue.range((Excluded(k), Excluded(key))).count()
                    }
                    None => 1 + in_queue.range(..key).count(),
                };
                counted = Some((key, place));
                places[i] = Some(u32::try_from(place).unwrap_or(u32::MAX));
            }
        }
        places
    }

    /// The first in line of `queue`.
    pub fn front(&self, queue: &Id) -> Option<(&WaitKey, &Id)> {
        self.queues.get(queue)?.first_key_value()
    }

    /// Each queue's line in order: (queue, first to last).
    pub fn by_queue(&self) -> impl Iterator<Item = (&Id, &BTreeMap<WaitKey, Id>)> {
        self.queues.iter()
    }

    /// The lanes with someone waiting.
    pub fn lanes(&self) -> impl Iterator<Item = &Lane> {
        self.lanes.keys()
    }

    /// The first in `lane` after `after` (from the start when `None`).
    pub fn next_in(&self, lane: &Lane, after: Option<WaitKey>) -> Option<WaitKey> {
        let in_lane = self.lanes.get(lane)?;
        match after {
            None => in_lane.first().copied(),
            Some(k) => in_lane
                .range((Excluded(k), std::ops::Bound::Unbounded))
                .next()
                .copied(),
        }
    }

    /// The lane `key` is in.
    pub fn lane_of(&self, key: &WaitKey) -> Option<&Lane> {
        self.map.get(key).map(|(_, lane)| lane)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// `places` says what `place` says of each key, whatever the keys: in line or
        /// not, repeated, in any order, over several queues.
        #[test]
        fn places_agree_with_place(
            line_keys in prop::collection::vec((0i32..3, 0u64..60, 0usize..2), 0..80),
            gone in prop::collection::vec(0usize..80, 0..20),
            asked in prop::collection::vec((0i32..3, 0u64..60), 0..60),
        ) {
            let mut line = Line::default();
            for (p, t, q) in &line_keys {
                line.insert((Reverse(*p), *t), format!("{p}-{t}").into(), lane(["q", "r"][*q], 0));
            }
            for i in gone {
                if let Some((p, t, _)) = line_keys.get(i) {
                    line.remove(&(Reverse(*p), *t));
                }
            }
            // Some keys asked at random, then every key that was ever in line.
            let keys: Vec<WaitKey> = asked
                .iter()
                .copied()
                .chain(line_keys.iter().map(|&(p, t, _)| (p, t)))
                .map(|(p, t)| (Reverse(p), t))
                .collect();
            let one_by_one: Vec<Option<u32>> = keys
                .iter()
                .map(|k| line.lane_of(k).and_then(|lane| line.place(k, &lane.queue)))
                .collect();
            prop_assert_eq!(line.places(&keys), one_by_one);
        }
    }

    fn lane(q: &str, c: usize) -> Lane {
        Lane {
            queue: q.into(),
            class: Some(c),
        }
    }

    #[test]
    fn places_fronts_and_joins() {
        let mut line = Line::default();
        let k = |p: i32, t: u64| (Reverse(p), t);
        line.insert(k(0, 1), "a".into(), lane("q", 0));
        assert_eq!(line.new_front, vec![Id::from("q")]);
        line.new_front.clear();
        line.insert(k(0, 2), "b".into(), lane("q", 0));
        line.insert(k(0, 3), "c".into(), lane("r", 1));
        assert!(!line.shifted, "arrivals at the back move nobody");
        assert_eq!(line.joined.len(), 3);
        line.joined.clear();
        assert_eq!(line.place(&k(0, 2), &"q".into()), Some(2));
        assert_eq!(line.place(&k(0, 3), &"r".into()), Some(1));
        // A higher priority goes ahead: it joined, others moved, q has a new front.
        line.new_front.clear();
        line.insert(k(5, 4), "d".into(), lane("q", 0));
        assert!(line.shifted);
        assert_eq!(line.joined, vec![k(5, 4)]);
        assert_eq!(line.new_front, vec![Id::from("q")]);
        assert_eq!(line.place(&k(0, 2), &"q".into()), Some(3));
        // The front leaves: the next one is the new front.
        line.new_front.clear();
        line.shifted = false;
        assert_eq!(line.remove(&k(5, 4)), Some("d".into()));
        assert!(line.shifted);
        assert_eq!(line.new_front, vec![Id::from("q")]);
        assert_eq!(
            line.front(&"q".into()).map(|(_, id)| id.clone()),
            Some("a".into())
        );
        // The last one leaves: nobody moved.
        line.shifted = false;
        line.new_front.clear();
        line.remove(&k(0, 2));
        assert!(!line.shifted && line.new_front.is_empty());
        assert_eq!(line.in_queue(&"q".into()), 1);
        // Lanes follow class changes.
        line.relane(&k(0, 1), lane("q", 7));
        assert_eq!(line.next_in(&lane("q", 7), None), Some(k(0, 1)));
        assert_eq!(line.next_in(&lane("q", 0), None), None);
        assert_eq!(line.lanes().count(), 2);
        assert_eq!(line.len(), 2);
    }
}
