//! The nearest valid name for a typo: `offer_timout_ms` -> `offer_timeout_ms`.

/// Edit distance counting an insertion, a deletion, a substitution or a swap of two
/// neighbours as one edit (optimal string alignment), case-insensitive.
pub fn distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().flat_map(char::to_lowercase).collect();
    let b: Vec<char> = b.chars().flat_map(char::to_lowercase).collect();
    // Three rows: the one before the previous one is needed for swaps.
    let mut before: Vec<usize> = vec![0; b.len() + 1];
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    for i in 1..=a.len() {
        let mut row = vec![i; b.len() + 1];
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            row[j] = (previous[j] + 1)
                .min(row[j - 1] + 1)
                .min(previous[j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                row[j] = row[j].min(before[j - 2] + 1);
            }
        }
        before = std::mem::replace(&mut previous, row);
    }
    previous[b.len()]
}

/// The candidate closest to `typo`, if it is close enough to be what was meant: at
/// most a third of the typo's length in edits (at least one), ties to the first.
pub fn nearest<'a>(typo: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let limit = (typo.chars().count() / 3).max(1);
    candidates
        .into_iter()
        .map(|c| (distance(typo, c), c))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distance_counts_edits_and_swaps() {
        assert_eq!(distance("offer_timout_ms", "offer_timeout_ms"), 1);
        assert_eq!(distance("wrap_pu_ms", "wrap_up_ms"), 1);
        assert_eq!(distance("listen", "listen"), 0);
        assert_eq!(distance("", "abc"), 3);
        assert_eq!(distance("kitten", "sitting"), 3);
        assert_eq!(distance("Listen", "listen"), 0);
    }

    #[test]
    fn nearest_suggests_only_close_names() {
        let keys = ["offer_timeout_ms", "wrap_up_ms", "agent_grace_ms"];
        assert_eq!(nearest("offer_timout_ms", keys), Some("offer_timeout_ms"));
        assert_eq!(nearest("wrapup_ms", keys), Some("wrap_up_ms"));
        assert_eq!(nearest("colour", keys), None);
        assert_eq!(nearest("suport", ["support", "billing"]), Some("support"));
        assert_eq!(nearest("x", ["support", "billing"]), None);
    }
}
