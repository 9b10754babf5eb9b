//! The P×K class-balanced sampler: every batch holds P classes with K images each.
//!
//! Classes are visited in a fresh random order every epoch, each class once per epoch; a class
//! with fewer than K images is drawn with replacement. All randomness derives from the seed and
//! the position (epoch, batch), so the sampler's whole state is three integers: a resumed run
//! draws exactly the batches an uninterrupted one would.

use rand::rngs::Xoshiro256PlusPlus;
use rand::seq::{IndexedRandom, SliceRandom};
use rand::{RngExt, SeedableRng};
use serde::{Deserialize, Serialize};

/// Where the sampler is: enough to resume it.
/// The `[sampler]` section of a run's config: the P×K shape of every training batch.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SamplerConfig {
    /// Classes per batch.
    pub p: usize,
    /// Images per class.
    pub k: usize,
}

impl Default for SamplerConfig {
    fn default() -> Self {
        Self { p: 5, k: 16 }
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SamplerState {
    pub epoch: u64,
    /// Position in the epoch's class order.
    pub cursor: usize,
    /// Batches drawn so far, over all epochs.
    pub batches: u64,
}

#[derive(Clone, Debug)]
pub struct PkSampler {
    /// Item indices of each class (classes with at least one item).
    classes: Vec<Vec<usize>>,
    p: usize,
    k: usize,
    seed: u64,
    state: SamplerState,
    order: Vec<usize>,
}

#[derive(Debug, thiserror::Error)]
pub enum SamplerError {
    #[error("P×K sampling needs P ≥ 1 and K ≥ 1, got P = {0}, K = {1}")]
    Empty(usize, usize),
    #[error(
        "P = {p} classes per batch, but the training split has only {classes} class{}",
        if *classes == 1 { "" } else { "es" }
    )]
    TooFewClasses { p: usize, classes: usize },
    #[error("the checkpoint's sampler is at class {cursor} of an epoch of {classes} classes: not a checkpoint of this training set")]
    BadCursor { cursor: usize, classes: usize },
}

pub(crate) fn mix(a: u64, b: u64, c: u64) -> u64 {
    // SplitMix64 finaliser over the combined words: independent streams per (seed, epoch, batch).
    let mut z = a ^ b.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ c.wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

impl PkSampler {
    /// `labels[i]` is the class of item `i`.
    pub fn new(labels: &[i64], p: usize, k: usize, seed: u64) -> Result<Self, SamplerError> {
        if p == 0 || k == 0 {
            return Err(SamplerError::Empty(p, k));
        }
        let mut by_class: std::collections::BTreeMap<i64, Vec<usize>> = Default::default();
        for (i, &label) in labels.iter().enumerate() {
            by_class.entry(label).or_default().push(i);
        }
        let classes: Vec<Vec<usize>> = by_class.into_values().collect();
        if classes.len() < p {
            return Err(SamplerError::TooFewClasses { p, classes: classes.len() });
        }
        let mut sampler = Self { classes, p, k, seed, state: SamplerState::default(), order: Vec::new() };
        sampler.order = sampler.epoch_order(0);
        Ok(sampler)
    }

    pub fn state(&self) -> SamplerState {
        self.state
    }

    /// Continues from a saved state; a cursor past this training set's classes (a damaged
    /// checkpoint, or one of another set) is refused before it indexes past the class order.
    pub fn resume(&mut self, state: SamplerState) -> Result<(), SamplerError> {
        if state.cursor > self.classes.len() {
            return Err(SamplerError::BadCursor { cursor: state.cursor, classes: self.classes.len() });
        }
        self.state = state;
        self.order = self.epoch_order(state.epoch);
        Ok(())
    }

    pub fn batch_size(&self) -> usize {
        self.p * self.k
    }

    fn epoch_order(&self, epoch: u64) -> Vec<usize> {
        let mut order: Vec<usize> = (0..self.classes.len()).collect();
        order.shuffle(&mut Xoshiro256PlusPlus::seed_from_u64(mix(self.seed, epoch, u64::MAX)));
        order
    }

    /// The item indices of the next batch, `P × K` of them, grouped by class.
    pub fn next_batch(&mut self) -> Vec<usize> {
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(mix(self.seed, self.state.epoch, self.state.batches));
        let mut chosen: Vec<usize> = Vec::with_capacity(self.p);
        while chosen.len() < self.p {
            if self.state.cursor == self.order.len() {
                self.state.epoch += 1;
                self.state.cursor = 0;
                self.order = self.epoch_order(self.state.epoch);
            }
            let class = self.order[self.state.cursor];
            self.state.cursor += 1;
            // At an epoch boundary the next epoch may start with a class already in this batch.
            if !chosen.contains(&class) {
                chosen.push(class);
            }
        }
        self.state.batches += 1;
        let mut batch = Vec::with_capacity(self.p * self.k);
        for class in chosen {
            let items = &self.classes[class];
            if items.len() >= self.k {
                batch.extend(items.sample(&mut rng, self.k).copied());
            } else {
                batch.extend((0..self.k).map(|_| items[rng.random_range(0..items.len())]));
            }
        }
        batch
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels() -> Vec<i64> {
        // 7 classes of sizes 1..=7.
        (0..7).flat_map(|c| std::iter::repeat_n(c as i64 * 10, c + 1)).collect()
    }

    #[test]
    fn batches_are_p_classes_of_k() {
        let y = labels();
        let mut s = PkSampler::new(&y, 3, 4, 1).unwrap();
        for _ in 0..50 {
            let batch = s.next_batch();
            assert_eq!(batch.len(), 12);
            for group in batch.chunks(4) {
                assert!(group.iter().all(|&i| y[i] == y[group[0]]), "a group is one class");
            }
            let classes: std::collections::HashSet<i64> = batch.iter().map(|&i| y[i]).collect();
            assert_eq!(classes.len(), 3, "P distinct classes");
        }
    }

    #[test]
    fn distinct_items_when_the_class_is_large_enough() {
        let y = labels();
        let mut s = PkSampler::new(&y, 2, 4, 2).unwrap();
        for _ in 0..50 {
            for group in s.next_batch().chunks(4) {
                let distinct: std::collections::HashSet<_> = group.iter().collect();
                if y.iter().filter(|&&l| l == y[group[0]]).count() >= 4 {
                    assert_eq!(distinct.len(), 4, "no repeats in a class of ≥ K items");
                }
            }
        }
    }

    #[test]
    fn every_class_once_per_epoch() {
        let y: Vec<i64> = (0..12).flat_map(|c| [c, c, c]).collect();
        let mut s = PkSampler::new(&y, 4, 2, 3).unwrap();
        // 12 classes, 4 per batch: each run of 3 batches is one epoch.
        for _ in 0..5 {
            let mut seen: Vec<i64> = (0..3).flat_map(|_| s.next_batch()).map(|i| y[i]).collect();
            seen.sort();
            seen.dedup();
            assert_eq!(seen.len(), 12);
        }
    }

    #[test]
    fn seeded_and_resumable() {
        let y = labels();
        let mut a = PkSampler::new(&y, 3, 2, 9).unwrap();
        let first: Vec<Vec<usize>> = (0..20).map(|_| a.next_batch()).collect();
        let mut b = PkSampler::new(&y, 3, 2, 9).unwrap();
        assert_eq!(first, (0..20).map(|_| b.next_batch()).collect::<Vec<_>>());
        // Stop after 7 batches, save, resume in a new sampler.
        let mut c = PkSampler::new(&y, 3, 2, 9).unwrap();
        for _ in 0..7 {
            c.next_batch();
        }
        let saved = c.state();
        let mut d = PkSampler::new(&y, 3, 2, 9).unwrap();
        d.resume(saved).unwrap();
        assert_eq!(first[7..], (7..20).map(|_| d.next_batch()).collect::<Vec<_>>()[..]);
        let mut other = PkSampler::new(&y, 3, 2, 10).unwrap();
        assert_ne!(first, (0..20).map(|_| other.next_batch()).collect::<Vec<_>>());
    }

    #[test]
    fn errors() {
        assert!(matches!(PkSampler::new(&[0, 1], 3, 2, 0), Err(SamplerError::TooFewClasses { .. })));
        assert!(matches!(PkSampler::new(&[0, 1], 0, 2, 0), Err(SamplerError::Empty(..))));
    }
}
