//! Leak-free assignment of source images to the test split and to cross-validation folds.
//!
//! Contract: the assignment is a pure function of the seed and the multiset of (content hash,
//! label) pairs — not of file names or listing order. Within each label, distinct contents are
//! ranked by `blake3(seed, hash)`; the first `round(n · test_fraction)` go to test, the rest are
//! dealt to folds 0..k round-robin in rank order (so each fold holds ⌊n/k⌋ or ⌈n/k⌉ of each
//! label: stratified). Files with identical bytes share one decision, so a duplicate can never sit
//! on both sides of a split.
//!
//! Adding files re-ranks nothing that was there: existing images keep their rank order, but the
//! new ones interleave, so the test cut-off and the round-robin deal move and some existing images
//! change split or fold. The manifest then differs, every downstream output made from the old one
//! is refused by hash (never silently mixed), and the stages must be rerun from preprocess.

use std::collections::BTreeMap;

use crate::paths::Split;

/// Where one image goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Assignment {
    pub split: Split,
    /// `Some(fold)` for the train split.
    pub fold: Option<u8>,
}

/// Assigns each `(content_hash, label)` item (same order as given) to test or to a fold.
pub fn assign(items: &[(&str, u8)], seed: u64, test_fraction: f64, folds: u8) -> Vec<Assignment> {
    assert!(folds > 0, "at least one fold");
    // Distinct contents per label, ranked by the keyed hash.
    let mut decided: BTreeMap<(u8, &str), Assignment> = BTreeMap::new();
    let labels: std::collections::BTreeSet<u8> = items.iter().map(|(_, l)| *l).collect();
    for label in labels {
        let mut contents: Vec<&str> = items
            .iter()
            .filter(|(_, l)| *l == label)
            .map(|(h, _)| *h)
            .collect();
        contents.sort_unstable();
        contents.dedup();
        let mut ranked: Vec<(blake3::Hash, &str)> = contents
            .into_iter()
            .map(|h| (rank_key(seed, h), h))
            .collect();
        ranked.sort_unstable_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()).then(a.1.cmp(b.1)));
        let n_test = (ranked.len() as f64 * test_fraction).round() as usize;
        for (pos, (_, h)) in ranked.into_iter().enumerate() {
            let a = if pos < n_test {
                Assignment {
                    split: Split::Test,
                    fold: None,
                }
            } else {
                Assignment {
                    split: Split::Train,
                    fold: Some(((pos - n_test) % folds as usize) as u8),
                }
            };
            decided.insert((label, h), a);
        }
    }
    items.iter().map(|(h, l)| decided[&(*l, *h)]).collect()
}

fn rank_key(seed: u64, hash: &str) -> blake3::Hash {
    let mut h = blake3::Hasher::new();
    h.update(b"split");
    h.update(&seed.to_le_bytes());
    h.update(hash.as_bytes());
    h.finalize()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn items(n_real: usize, n_fake: usize) -> Vec<(String, u8)> {
        (0..n_real)
            .map(|i| (format!("r{i}"), 0))
            .chain((0..n_fake).map(|i| (format!("f{i}"), 1)))
            .collect()
    }

    fn refs(v: &[(String, u8)]) -> Vec<(&str, u8)> {
        v.iter().map(|(h, l)| (h.as_str(), *l)).collect()
    }

    #[test]
    fn study_sizes_are_stratified() {
        let v = items(1081, 960);
        let a = assign(&refs(&v), 42, 0.2, 5);
        let count = |label: u8, pred: &dyn Fn(&Assignment) -> bool| {
            v.iter()
                .zip(&a)
                .filter(|((_, l), x)| *l == label && pred(x))
                .count()
        };
        let test = |x: &Assignment| x.split == Split::Test;
        assert_eq!(count(0, &test), 216);
        assert_eq!(count(1, &test), 192);
        for f in 0..5u8 {
            let in_fold = move |x: &Assignment| x.fold == Some(f);
            let (r, k) = (count(0, &in_fold), count(1, &in_fold));
            assert!((172..=174).contains(&r), "fold {f}: {r} real");
            assert!((153..=154).contains(&k), "fold {f}: {k} fake");
        }
        assert!(a
            .iter()
            .all(|x| (x.split == Split::Test) == x.fold.is_none()));
    }

    #[test]
    fn independent_of_order_and_seeded() {
        let v = items(50, 40);
        let a = assign(&refs(&v), 1, 0.2, 5);
        let mut rev = v.clone();
        rev.reverse();
        let mut b = assign(&refs(&rev), 1, 0.2, 5);
        b.reverse();
        assert_eq!(a, b);
        assert_ne!(a, assign(&refs(&v), 2, 0.2, 5));
    }

    #[test]
    fn duplicates_share_their_side() {
        let mut v = items(30, 30);
        v.push(("r3".into(), 0));
        v.push(("r7".into(), 0));
        let a = assign(&refs(&v), 9, 0.3, 3);
        assert_eq!(a[3], a[60]);
        assert_eq!(a[7], a[61]);
    }
}
