//! Where a board belongs when the work is split between workers.
//!
//! Every board has a *slot*, 0 to [`SLOTS`] − 1, from a stable hash of its
//! id (FNV-1a, the same in every process and every release). The slot is
//! stored in the board's document and in each of its players' documents,
//! and indexed, so a worker can follow exactly the documents of its slots.
//!
//! Workers split the slots into `WORKER_SHARDS` contiguous *shards*; shard
//! `k` of `n` holds the slots `s` with `s * n / SLOTS == k`. The stored slot
//! does not depend on the number of shards, so changing `WORKER_SHARDS`
//! needs no migration of the data.

use std::ops::Range;

/// How many slots there are: the most shards a deployment can have.
pub const SLOTS: u16 = 1024;

/// The default number of shards (`WORKER_SHARDS`).
pub const DEFAULT_SHARDS: u16 = 16;

/// A board's slot: FNV-1a (32 bits) of its id's bytes, modulo [`SLOTS`].
pub fn slot_of(board: &str) -> u16 {
    let mut hash: u32 = 0x811c_9dc5;
    for byte in board.bytes() {
        hash ^= u32::from(byte);
        hash = hash.wrapping_mul(0x0100_0193);
    }
    (hash % u32::from(SLOTS)) as u16
}

/// How the slots are split into shards: `count` shards, 1 to [`SLOTS`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shards {
    count: u16,
}

impl Shards {
    /// `count` shards; `None` unless 1 ≤ `count` ≤ [`SLOTS`].
    pub fn new(count: u16) -> Option<Self> {
        (1..=SLOTS).contains(&count).then_some(Self { count })
    }

    /// How many shards there are; they are numbered `0..count`.
    pub fn count(self) -> u16 {
        self.count
    }

    /// Every shard number, `0..count`.
    pub fn all(self) -> Range<u16> {
        0..self.count
    }

    /// The shard a slot falls in.
    pub fn of_slot(self, slot: u16) -> u16 {
        (u32::from(slot) * u32::from(self.count) / u32::from(SLOTS)) as u16
    }

    /// The shard a board belongs to.
    pub fn of_board(self, board: &str) -> u16 {
        self.of_slot(slot_of(board))
    }

    /// The slots of `shard`: a contiguous range, empty for no shard.
    pub fn slots(self, shard: u16) -> Range<u16> {
        let n = u32::from(self.count);
        let s = u32::from(SLOTS);
        // The smallest slot whose shard is `k`: ceil(k * SLOTS / n).
        let first = |k: u32| (k * s).div_ceil(n).min(s) as u16;
        let k = u32::from(shard);
        if k >= n {
            return 0..0;
        }
        first(k)..first(k + 1)
    }
}

impl Default for Shards {
    fn default() -> Self {
        Self {
            count: DEFAULT_SHARDS,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_a_stable_hash_of_the_id() {
        // Pinned: a change here would move every stored board.
        assert_eq!(slot_of(""), (0x811c_9dc5u32 % 1024) as u16);
        assert_eq!(slot_of("a"), (0xe40c_292cu32 % 1024) as u16);
        assert_eq!(slot_of("global"), slot_of("global"));
    }

    #[test]
    fn shards_split_the_slots_without_gaps_or_overlaps() {
        for count in [1, 2, 3, 5, 16, 17, 1000, 1024] {
            let shards = Shards::new(count).unwrap();
            let mut next = 0;
            for shard in shards.all() {
                let slots = shards.slots(shard);
                assert_eq!(slots.start, next, "{count} shards, shard {shard}");
                assert!(!slots.is_empty(), "{count} shards, shard {shard}");
                for slot in slots.clone() {
                    assert_eq!(shards.of_slot(slot), shard);
                }
                next = slots.end;
            }
            assert_eq!(next, SLOTS);
        }
    }

    #[test]
    fn the_number_of_shards_is_1_to_1024() {
        assert!(Shards::new(0).is_none());
        assert!(Shards::new(1025).is_none());
        assert_eq!(Shards::default().count(), 16);
        assert_eq!(Shards::default().slots(1), 64..128);
    }
}
