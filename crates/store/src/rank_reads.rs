//! Ranks as the origin reads them: the digest searched here, from a copy.
//!
//! A rank is the players ahead of the key's chunk, plus those ahead of its
//! leaf in the chunk, plus the players counted live from the leaf's start
//! to the key (see [`crate::ranks`]). Searching the root and the chunk with
//! ReQL functions cost RethinkDB 2.4.4 a few milliseconds of CPU per rank on
//! a board of 1,000,000 players, more than the count itself; a score-add
//! waited behind those reads. So the store keeps a copy of every digest
//! document it reads, known by its version, and searches it here:
//!
//! - the query that reads the board (or the player) asks for the root only
//!   if its version is not the copy's ([`crate::ranks::root_if_changed`]);
//! - a chunk is read by primary key only when the root names a version of
//!   it that is not copied;
//! - then one count of at most [`LIVE_CAP`] + 1 index entries.
//!
//! A root and a chunk are paired by the version the root names for the
//! chunk, so a rank never mixes a chunk with a root of another write of the
//! digest, except right after a keeper's write, where the chunk read may be
//! newer than the root read before it (a pass apart at most, as a rank may
//! be anyway while writes flow).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use reql_terms::r;
use serde_json::Value;

use crate::queries::single;
use crate::ranks::{self, ChunkRef, DigestChunk, DigestRoot, RankKey, LIVE_CAP};
use crate::reql::Walk;
use crate::{Store, StoreError};

/// The copies of digest documents one process keeps. Bounded: a map that
/// is full is emptied and filled again (each entry costs one point read to
/// get back).
#[derive(Default)]
pub(crate) struct DigestCopies(Mutex<Copies>);

#[derive(Default)]
struct Copies {
    roots: HashMap<String, Arc<DigestRoot>>,
    chunks: HashMap<String, Arc<DigestChunk>>,
}

impl DigestCopies {
    /// Boards whose root is kept.
    const MOST_ROOTS: usize = 1024;
    /// Chunks kept, over all boards: at most 128 leaves each, about 10 KB;
    /// a board of 1,000,000 players has about 120.
    const MOST_CHUNKS: usize = 2048;

    fn lock(&self) -> MutexGuard<'_, Copies> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The copy of a board's root, if there is one.
    pub(crate) fn root(&self, board: &str) -> Option<Arc<DigestRoot>> {
        self.lock().roots.get(board).cloned()
    }

    /// The root a query answered (see [`ranks::root_if_changed`]) when
    /// asked with the copy `held`, the copy kept up to date: `None` for a
    /// board without a digest.
    pub(crate) fn answered(
        &self,
        board: &str,
        held: Option<Arc<DigestRoot>>,
        answer: Value,
    ) -> Result<Option<Arc<DigestRoot>>, StoreError> {
        if answer.is_null() {
            self.lock().roots.remove(board);
            return Ok(None);
        }
        if answer.get("same").is_some() {
            return match held {
                Some(root) => Ok(Some(root)),
                None => Err(StoreError::Decode(
                    "a digest root answered as unchanged, asked with no copy".into(),
                )),
            };
        }
        let root: Arc<DigestRoot> = Arc::new(decode(answer)?);
        let mut copies = self.lock();
        if copies.roots.len() >= Self::MOST_ROOTS && !copies.roots.contains_key(board) {
            copies.roots.clear();
        }
        copies.roots.insert(board.to_owned(), root.clone());
        Ok(Some(root))
    }

    /// The copy of a chunk at version `v`, if there is one.
    fn chunk(&self, id: &str, v: u64) -> Option<Arc<DigestChunk>> {
        if v == 0 {
            return None;
        }
        self.lock().chunks.get(id).filter(|c| c.v == v).cloned()
    }

    fn keep_chunk(&self, chunk: DigestChunk) -> Arc<DigestChunk> {
        let chunk = Arc::new(chunk);
        if chunk.v == 0 {
            // Written without a version: it cannot be told from another.
            return chunk;
        }
        let mut copies = self.lock();
        if copies.chunks.len() >= Self::MOST_CHUNKS && !copies.chunks.contains_key(&chunk.id) {
            copies.chunks.clear();
        }
        copies.chunks.insert(chunk.id.clone(), chunk.clone());
        chunk
    }
}

/// The order a board document ranks in.
pub(crate) fn walk_of(board: &Value) -> Walk {
    match board.pointer("/rules/order").and_then(Value::as_str) {
        Some("asc") => Walk::Up,
        _ => Walk::Down,
    }
}

/// The root a digest answered, if it ranks in `walk` (a digest of a board
/// deleted and created again with the other order is not used).
fn in_order(root: Option<Arc<DigestRoot>>, walk: Walk) -> Option<Arc<DigestRoot>> {
    root.filter(|root| root.asc == (walk == Walk::Up) && !root.c.is_empty())
}

/// The chunk a key falls in: the last whose start is at or ahead of it. A
/// board without a digest is one chunk from the top.
fn chunk_of_key(root: Option<&DigestRoot>, walk: Walk, key: &RankKey) -> ChunkRef {
    root.and_then(|root| {
        root.c
            .iter()
            .rfind(|c| c.start.cmp_in(key, walk).is_le())
            .cloned()
    })
    .unwrap_or_else(|| no_chunk(walk))
}

/// The chunk the player with `ahead` players ahead of it falls in.
fn chunk_of_rank(root: Option<&DigestRoot>, walk: Walk, ahead: u64) -> ChunkRef {
    root.and_then(|root| root.c.iter().rfind(|c| c.cum <= ahead).cloned())
        .unwrap_or_else(|| no_chunk(walk))
}

fn no_chunk(walk: Walk) -> ChunkRef {
    ChunkRef {
        start: RankKey::top(walk),
        cum: 0,
        id: String::new(),
        v: 0,
    }
}

/// Where a rank is counted from: the players ahead of a leaf, and the
/// leaf's first key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Leaf {
    pub base: u64,
    pub from: RankKey,
}

/// The leaf of `chunk` (whose leaves are `leaves`) that `keep` holds true
/// of last; the chunk's start when none does (or the chunk is gone).
fn last_leaf(
    chunk: &ChunkRef,
    leaves: &[(RankKey, u64)],
    keep: impl Fn(&RankKey, u64) -> bool,
) -> Leaf {
    match leaves.iter().rfind(|(start, cum)| keep(start, *cum)) {
        Some((start, cum)) => Leaf {
            base: chunk.cum + cum,
            from: start.clone(),
        },
        None => Leaf {
            base: chunk.cum,
            from: chunk.start.clone(),
        },
    }
}

impl Store {
    /// The leaves of a chunk: from the copy when the root names the copied
    /// version, else read (and copied).
    async fn leaves(&self, chunk: &ChunkRef) -> Result<Arc<DigestChunk>, StoreError> {
        if chunk.id.is_empty() {
            return Ok(Arc::new(DigestChunk {
                id: String::new(),
                board: String::new(),
                v: 0,
                l: Vec::new(),
            }));
        }
        if let Some(copy) = self.digests().chunk(&chunk.id, chunk.v) {
            return Ok(copy);
        }
        let value = single(self.run(ranks::chunk_doc(&chunk.id)).await?)?;
        if value.is_null() {
            // Gone (merged away since the root was read): one leaf.
            return Ok(Arc::new(DigestChunk {
                id: chunk.id.clone(),
                board: String::new(),
                v: 0,
                l: Vec::new(),
            }));
        }
        Ok(self.digests().keep_chunk(decode(value)?))
    }

    /// The leaf a key falls in.
    pub(crate) async fn leaf_of_key(
        &self,
        root: Option<&DigestRoot>,
        walk: Walk,
        key: &RankKey,
    ) -> Result<Leaf, StoreError> {
        let chunk = chunk_of_key(root, walk, key);
        let doc = self.leaves(&chunk).await?;
        Ok(last_leaf(&chunk, &doc.l, |start, _| {
            start.cmp_in(key, walk).is_le()
        }))
    }

    /// The leaf a key falls in, from the copies alone (`None` unless the
    /// chunk it needs is copied at the version the root names).
    pub(crate) fn copied_leaf_of_key(
        &self,
        root: &DigestRoot,
        walk: Walk,
        key: &RankKey,
    ) -> Option<Leaf> {
        let chunk = chunk_of_key(Some(root), walk, key);
        let doc = self.digests().chunk(&chunk.id, chunk.v)?;
        Some(last_leaf(&chunk, &doc.l, |start, _| {
            start.cmp_in(key, walk).is_le()
        }))
    }

    /// The leaf of the player with `ahead` players ahead of it.
    pub(crate) async fn leaf_of_rank(
        &self,
        root: Option<&DigestRoot>,
        walk: Walk,
        ahead: u64,
    ) -> Result<Leaf, StoreError> {
        let chunk = chunk_of_rank(root, walk, ahead);
        let doc = self.leaves(&chunk).await?;
        let cum = chunk.cum;
        Ok(last_leaf(&chunk, &doc.l, |_, inner| cum + inner <= ahead))
    }

    /// The rank of the key (`score`, `player`) on a board: its leaf from
    /// the digest, then one count of at most [`LIVE_CAP`] + 1 entries.
    pub(crate) async fn count_rank(
        &self,
        board: &str,
        walk: Walk,
        root: Option<&DigestRoot>,
        key: &RankKey,
    ) -> Result<u64, StoreError> {
        let leaf = self.leaf_of_key(root, walk, key).await?;
        let live = ranks::live_count(
            board,
            walk,
            &leaf.from,
            r.expr(key.0),
            r.expr(key.1.clone()),
        );
        let live: u64 = decode(single(self.run(live).await?)?)?;
        rank_from(&leaf, live)
    }
}

/// A rank from its leaf and the players counted from the leaf's start,
/// unless counting them would have walked more than the cap (the keeper is
/// far behind).
pub(crate) fn rank_from(leaf: &Leaf, live: u64) -> Result<u64, StoreError> {
    if live > LIVE_CAP {
        return Err(StoreError::RanksBehind);
    }
    Ok(leaf.base + live + 1)
}

/// The root a digest answered for a board ranking in `walk`, asked with
/// the copy `held`.
pub(crate) fn root_for(
    store: &Store,
    board: &str,
    walk: Walk,
    held: Option<Arc<DigestRoot>>,
    answer: Value,
) -> Result<Option<Arc<DigestRoot>>, StoreError> {
    Ok(in_order(
        store.digests().answered(board, held, answer)?,
        walk,
    ))
}

fn decode<T: serde::de::DeserializeOwned>(value: Value) -> Result<T, StoreError> {
    T::deserialize(value).map_err(|e| StoreError::Decode(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn key(s: i64, p: &str) -> RankKey {
        RankKey(s, p.into())
    }

    fn sample_root() -> DigestRoot {
        serde_json::from_value(json!({
            "id": "b", "board": "b", "v": 7, "n": 12, "asc": false,
            "c": [[[9_007_199_254_740_992_i64, ""], 0, "b#0", 5], [[7, "p07"], 6, "b#3", 7]],
        }))
        .unwrap()
    }

    #[test]
    fn a_key_falls_in_the_last_chunk_starting_at_or_ahead_of_it() {
        let root = sample_root();
        assert_eq!(
            chunk_of_key(Some(&root), Walk::Down, &key(9, "p01")).id,
            "b#0"
        );
        assert_eq!(
            chunk_of_key(Some(&root), Walk::Down, &key(7, "p07")).id,
            "b#3"
        );
        assert_eq!(
            chunk_of_key(Some(&root), Walk::Down, &key(7, "p06")).id,
            "b#3"
        );
        assert_eq!(
            chunk_of_key(Some(&root), Walk::Down, &key(7, "p08")).id,
            "b#0"
        );
        assert_eq!(
            chunk_of_key(None, Walk::Up, &key(1, "a")).start,
            RankKey::top(Walk::Up)
        );
    }

    #[test]
    fn a_rank_falls_in_the_last_chunk_and_leaf_with_fewer_ahead() {
        let root = sample_root();
        assert_eq!(chunk_of_rank(Some(&root), Walk::Down, 5).id, "b#0");
        assert_eq!(chunk_of_rank(Some(&root), Walk::Down, 6).id, "b#3");
        let chunk = chunk_of_rank(Some(&root), Walk::Down, 9);
        let leaves = vec![(key(7, "p07"), 0), (key(6, "p09"), 2)];
        let leaf = last_leaf(&chunk, &leaves, |_, inner| chunk.cum + inner <= 9);
        assert_eq!(
            leaf,
            Leaf {
                base: 8,
                from: key(6, "p09")
            }
        );
        // A chunk that is gone reads as one leaf from its start.
        let leaf = last_leaf(&chunk, &[], |_, inner| chunk.cum + inner <= 9);
        assert_eq!(
            leaf,
            Leaf {
                base: 6,
                from: key(7, "p07")
            }
        );
    }

    #[test]
    fn roots_written_before_chunk_versions_still_read() {
        let old: DigestRoot = serde_json::from_value(json!({
            "id": "b", "board": "b", "v": 1, "n": 0, "asc": true,
            "c": [[[-9_007_199_254_740_992_i64, ""], 0, "b#0"]],
        }))
        .unwrap();
        assert_eq!(old.c[0].v, 0);
        assert_eq!(
            serde_json::to_value(&sample_root().c[1]).unwrap(),
            json!([[7, "p07"], 6, "b#3", 7])
        );
    }

    #[test]
    fn copies_answer_by_version_and_stay_bounded() {
        let copies = DigestCopies::default();
        assert!(copies.answered("b", None, Value::Null).unwrap().is_none());
        let root = copies
            .answered("b", None, serde_json::to_value(sample_root()).unwrap())
            .unwrap();
        assert_eq!(root.unwrap().v, 7);
        let held = copies.root("b");
        assert_eq!(held.as_ref().map(|x| x.v), Some(7));
        let same = copies.answered("b", held, json!({ "same": true }));
        assert_eq!(same.unwrap().unwrap().v, 7);
        let chunk = DigestChunk {
            id: "b#3".into(),
            board: "b".into(),
            v: 7,
            l: vec![],
        };
        copies.keep_chunk(chunk);
        assert!(copies.chunk("b#3", 7).is_some());
        assert!(copies.chunk("b#3", 8).is_none(), "another version");
        for i in 0..DigestCopies::MOST_ROOTS + 1 {
            copies
                .answered(
                    &format!("x{i}"),
                    None,
                    serde_json::to_value(sample_root()).unwrap(),
                )
                .unwrap();
        }
        assert!(copies.lock().roots.len() <= DigestCopies::MOST_ROOTS);
        // A board whose digest is gone is forgotten.
        copies
            .answered("b", None, serde_json::to_value(sample_root()).unwrap())
            .unwrap();
        assert!(copies.answered("b", None, Value::Null).unwrap().is_none());
        assert!(copies.root("b").is_none());
    }
}
