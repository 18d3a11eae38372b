//! A conversation's de-duplication window: the last client ids it saw, with the `seq`
//! each was stored as, so a message sent again (a retry after a lost ack) is answered
//! with the same ack instead of being stored twice.
//!
//! Every message is looked up in it (up to `routing.dedupe_window` entries, 256 by
//! default), so each entry keeps a 64-bit digest of its author and client id: the scan
//! compares integers, and compares the strings only when a digest matches.

use std::collections::VecDeque;

use crate::core::Id;

#[derive(Clone, Debug, Default)]
pub(crate) struct RecentIds {
    /// Each entry's digest, oldest first: the scan reads these alone (8 bytes an
    /// entry, contiguous), not the entries (48 bytes each).
    digests: VecDeque<u64>,
    /// The entries, in the same order.
    entries: VecDeque<Entry>,
}

#[derive(Clone, Debug)]
struct Entry {
    author: Id,
    client_id: Id,
    seq: u64,
}

impl RecentIds {
    /// A window holding `ids` (author, client id, seq), oldest first.
    pub(crate) fn from_oldest(ids: Vec<(Id, Id, u64)>) -> RecentIds {
        let mut recent = RecentIds {
            digests: VecDeque::with_capacity(ids.len()),
            entries: VecDeque::with_capacity(ids.len()),
        };
        for (author, client_id, seq) in ids {
            recent.digests.push_back(digest(&author, &client_id));
            recent.entries.push_back(Entry {
                author,
                client_id,
                seq,
            });
        }
        recent
    }

    /// The `seq` the author's message with this client id was stored as, if it is in
    /// the window.
    pub(crate) fn find(&self, author: &str, client_id: &str) -> Option<u64> {
        let d = digest(author, client_id);
        self.digests
            .iter()
            .enumerate()
            .filter(|(_, x)| **x == d)
            .map(|(i, _)| &self.entries[i])
            .find(|e| &*e.author == author && &*e.client_id == client_id)
            .map(|e| e.seq)
    }

    /// Remembers a stored message's client id, forgetting the oldest beyond `window`.
    pub(crate) fn push(&mut self, author: Id, client_id: Id, seq: u64, window: usize) {
        while self.entries.len() >= window.max(1) {
            self.entries.pop_front();
            self.digests.pop_front();
        }
        self.digests.push_back(digest(&author, &client_id));
        self.entries.push_back(Entry {
            author,
            client_id,
            seq,
        });
    }
}

/// FNV-1a over the author, a separator no id holds, and the client id.
fn digest(author: &str, client_id: &str) -> u64 {
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in author.bytes().chain([0xff]).chain(client_id.bytes()) {
        h ^= u64::from(b);
        h = h.wrapping_mul(PRIME);
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_what_it_holds_and_forgets_beyond_the_window() {
        let mut recent = RecentIds::default();
        for seq in 1..=5 {
            recent.push("alice".into(), format!("m{seq}").into(), seq, 3);
        }
        assert_eq!(recent.find("alice", "m5"), Some(5));
        assert_eq!(recent.find("alice", "m3"), Some(3));
        assert_eq!(recent.find("alice", "m2"), None, "beyond the window");
        assert_eq!(recent.find("bob", "m5"), None, "another author's id");
        // The separator keeps ("ab", "c") and ("a", "bc") apart.
        recent.push("ab".into(), "c".into(), 6, 3);
        assert_eq!(recent.find("a", "bc"), None);
        assert_eq!(recent.find("ab", "c"), Some(6));
    }

    #[test]
    fn a_window_restored_from_the_store_answers_the_same() {
        let recent = RecentIds::from_oldest(vec![
            ("alice".into(), "x".into(), 7),
            ("bob".into(), "x".into(), 8),
        ]);
        assert_eq!(recent.find("alice", "x"), Some(7));
        assert_eq!(recent.find("bob", "x"), Some(8));
    }
}
