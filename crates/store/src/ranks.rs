//! Ranks at any depth in bounded time.
//!
//! RethinkDB has no order statistics: counting the index entries ahead of a
//! player costs O(rank). So the worker holding a board's shard lease keeps a
//! **rank digest** of the board, from its changefeed: the board cut, in rank
//! order, into *leaves* of 64–128 players, each known by the key
//! (`[score, player id]`) of its first player and how many players it holds.
//! Leaves are grouped into *chunks* of at most 128 leaves. The digest is
//! stored in the `ranks` table:
//!
//! - the root, id `<board>`: `{board, v, n, asc, c: [[start, cum, chunk id,
//!   chunk v], ...]}`, `n` the board's ranked players, `cum` the players
//!   ahead of each chunk, `v` bumped at every write (a time in microseconds,
//!   so a board created again never repeats a version);
//! - each chunk, id `<board>#<k>`: `{board, v, l: [[start, cum], ...]}`,
//!   `cum` the players of the chunk ahead of each leaf, `v` the version it
//!   was written at, which the root's entry repeats.
//!
//! A rank is then `cum(chunk) + cum(leaf) + (players from the leaf's start to
//! the player) + 1`. The two arrays are searched by the origin, in a copy of
//! the documents it keeps by version (`crate::rank_reads`), so the database
//! only serves the root and at most one chunk by primary key and counts at
//! most a leaf's worth of index entries, on the `[board, score, id]` index,
//! whatever the player's depth. The last term is counted live, so a rank
//! reads the player's current score even right after a write.
//!
//! The first leaf starts at a sentinel key above every score in rank order,
//! so every key has a leaf. A board whose digest is not written yet reads
//! as one leaf from the top.

use reql_terms::{func, r, term, Term};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::queries::single;
use crate::reql::{Walk, IDEMPOTENCY_FIELD};
use crate::StoreError;
use crate::{BOARD_RANK_INDEX, PLAYERS, RANKS, RANKS_BOARD_INDEX};

/// The players a leaf aims to hold after a cut.
pub const LEAF_TARGET: u64 = 64;
/// A leaf holding more than this is cut again.
pub const LEAF_MAX: u64 = 128;
/// A leaf holding fewer than this is merged into its neighbour.
pub const LEAF_MIN: u64 = 16;
/// The most leaves in one chunk document.
pub const CHUNK_MAX: usize = 128;
/// The most index entries one rank may count live: twice a full leaf,
/// room for a leaf that grows between two passes of the keeper. A rank that
/// would count more is refused ([`crate::StoreError::RanksBehind`]) rather
/// than walked: only a keeper far behind leaves such a leaf.
pub const LIVE_CAP: u64 = 2 * LEAF_MAX;
/// The largest magnitude of a score (see `domain::MAX_SCORE`) plus one: the
/// sentinel start of every board's first leaf.
const BEYOND: i64 = 1 << 53;

/// A place in a board's rank order: a score and a player id. Stored as
/// `[score, player]`, which RethinkDB compares element by element, as the
/// `[board, score, id]` index orders players.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct RankKey(pub i64, pub String);

impl RankKey {
    /// The start of every board's first leaf: ahead of every player in
    /// `walk`'s order.
    pub fn top(walk: Walk) -> Self {
        match walk {
            Walk::Up => RankKey(-BEYOND, String::new()),
            Walk::Down => RankKey(BEYOND, String::new()),
        }
    }

    /// Past every player in `walk`'s order: the end of a board's last leaf.
    pub fn bottom(walk: Walk) -> Self {
        Self::top(walk.reverse())
    }

    /// `self` against `other` in rank order (the best first).
    pub fn cmp_in(&self, other: &Self, walk: Walk) -> std::cmp::Ordering {
        let natural = (self.0, &self.1).cmp(&(other.0, &other.1));
        match walk {
            Walk::Up => natural,
            Walk::Down => natural.reverse(),
        }
    }
}

/// The root document of a board's digest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DigestRoot {
    /// The document id: the board's id.
    pub id: String,
    /// The board the digest ranks.
    pub board: String,
    /// Bumped on every write of the digest.
    pub v: u64,
    /// The board's ranked players.
    pub n: u64,
    /// Whether the board ranks lower scores first.
    #[serde(default)]
    pub asc: bool,
    /// Each chunk: its first key, the players ahead of it, its document id
    /// and version.
    pub c: Vec<ChunkRef>,
}

/// A root's entry for one chunk, stored as `[start, cum, id, v]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChunkRef {
    /// The key of the chunk's first player.
    pub start: RankKey,
    /// The board's players ahead of the chunk.
    pub cum: u64,
    /// The chunk document's id.
    pub id: String,
    /// The version the chunk document was written at; 0 when the root was
    /// written without one (a copy of such a chunk is never trusted).
    pub v: u64,
}

impl Serialize for ChunkRef {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        (&self.start, self.cum, &self.id, self.v).serialize(s)
    }
}

impl<'de> Deserialize<'de> for ChunkRef {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        // Three elements from a root written before chunks had versions.
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Stored {
            Versioned(RankKey, u64, String, u64),
            Plain(RankKey, u64, String),
        }
        Ok(match Stored::deserialize(d)? {
            Stored::Versioned(start, cum, id, v) => Self { start, cum, id, v },
            Stored::Plain(start, cum, id) => Self {
                start,
                cum,
                id,
                v: 0,
            },
        })
    }
}

/// A chunk document of a board's digest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DigestChunk {
    /// The document id, `<board>#<k>` ([`chunk_id`]).
    pub id: String,
    /// The board the digest ranks.
    pub board: String,
    /// The version of the digest this chunk was written at (0: unknown).
    #[serde(default)]
    pub v: u64,
    /// Each leaf: its first key, the chunk's players ahead of it.
    pub l: Vec<(RankKey, u64)>,
}

/// The id of chunk `k` of a board's digest. `#` is not allowed in board
/// ids, so no chunk id is a board's root id.
pub fn chunk_id(board: &str, k: u64) -> String {
    format!("{board}#{k}")
}

// ---------------------------------------------------------------- terms

/// `[board, score, "<board>:<player>"]`: a key of the `[board, score, id]`
/// index. `score` and `player` are terms.
fn index_key(board: &str, score: Term, player: Term) -> Term {
    term!([
        board.to_owned(),
        score,
        r.expr(format!("{board}:")).add(player)
    ])
}

/// The players of `board` from the key `from` (inclusive) to the key `to`
/// (exclusive, or the end of the board), in `walk` order: one range of the
/// `[board, score, id]` index. Keys are `(score, player)` terms.
pub(crate) fn span(board: &str, walk: Walk, from: (Term, Term), to: Option<(Term, Term)>) -> Term {
    let from = index_key(board, from.0, from.1);
    let to = to.map(|(s, p)| index_key(board, s, p));
    let range = |lower, upper| {
        r.table(PLAYERS)
            .between(lower, upper)
            .opt("index", BOARD_RANK_INDEX)
    };
    match walk {
        Walk::Up => range(
            from,
            to.unwrap_or_else(|| term!([board.to_owned(), r.maxval()])),
        ),
        Walk::Down => range(
            to.unwrap_or_else(|| term!([board.to_owned(), r.minval()])),
            from,
        )
        .opt("left_bound", "open")
        .opt("right_bound", "closed"),
    }
}

/// [`span`] in `walk` order, from the index (nothing sorted in memory).
pub(crate) fn ordered(walk: Walk, span: Term) -> Term {
    span.order_by_index(match walk {
        Walk::Up => r.asc(BOARD_RANK_INDEX),
        Walk::Down => r.desc(BOARD_RANK_INDEX),
    })
}

/// The players strictly after the key (`score`, `player`) in `walk` order.
pub(crate) fn after_key(board: &str, walk: Walk, score: Term, player: Term) -> Term {
    let key = index_key(board, score, player);
    let range = |lower, upper| {
        r.table(PLAYERS)
            .between(lower, upper)
            .opt("index", BOARD_RANK_INDEX)
    };
    let (bound, range) = match walk {
        Walk::Up => (
            "left_bound",
            range(key, term!([board.to_owned(), r.maxval()])),
        ),
        Walk::Down => (
            "right_bound",
            range(term!([board.to_owned(), r.minval()]), key),
        ),
    };
    ordered(walk, range.opt(bound, "open")).without([IDEMPOTENCY_FIELD])
}

/// A board's digest root, or `{same: true}` when its version is still
/// `known` (the caller's copy is current: the root is not sent again), or
/// null for a board without one.
pub fn root_if_changed(board: &str, known: Option<u64>) -> Term {
    let root = r.table(RANKS).get(board.to_owned());
    match known {
        None => root,
        Some(v) => root.do_(func!(|root| r.branch(
            root.clone().g("v").default(Value::Null).eq(v),
            term!({ "same": true }),
            root,
        ))),
    }
}

/// The players ranked on a board, from its digest (0 without one).
pub fn ranked_count(board: &str) -> Term {
    r.table(RANKS).get(board.to_owned()).g("n").default(0)
}

/// A chunk document by id, or null.
pub fn chunk_doc(id: &str) -> Term {
    r.table(RANKS).get(id.to_owned())
}

/// The players from the leaf start `from` (inclusive) to the key (`score`,
/// `player`) (exclusive), counted on the index, at most [`LIVE_CAP`] + 1.
pub fn live_count(board: &str, walk: Walk, from: &RankKey, score: Term, player: Term) -> Term {
    span(
        board,
        walk,
        (r.expr(from.0), r.expr(from.1.clone())),
        Some((score, player)),
    )
    .limit(crate::reql::limit_arg(LIVE_CAP as usize + 1))
    .count()
}

/// The players from the leaf start `from` to the end of the board, at most
/// [`LIVE_CAP`] + 1: read when a rank falls over the cap past its leaf's
/// start, to tell a board that ends before the rank (the count is within
/// the cap) from a keeper that is behind.
pub fn reach(board: &str, walk: Walk, from: &RankKey) -> Term {
    span(board, walk, (r.expr(from.0), r.expr(from.1.clone())), None)
        .limit(crate::reql::limit_arg(LIVE_CAP as usize + 1))
        .count()
}

/// `limit` players from the `skip`-th after the leaf start `from`, in rank
/// order (`skip` is at most [`LIVE_CAP`]: the caller refuses more).
pub fn page_from(board: &str, walk: Walk, from: &RankKey, skip: u64, limit: usize) -> Term {
    ordered(
        walk,
        span(board, walk, (r.expr(from.0), r.expr(from.1.clone())), None),
    )
    .skip(skip.min(LIVE_CAP) as i64)
    .limit(crate::reql::limit_arg(limit))
    .without([IDEMPOTENCY_FIELD])
    .coerce_to("array")
}

// ------------------------------------------------------------ the keeper

/// A board's digest: its root and its chunks, `{root, chunks}`.
pub fn read_digest(board: &str) -> Term {
    r.table(RANKS).get(board.to_owned()).do_(func!(|root| {
        term!({
            "root": root.clone(),
            "chunks": r.branch(
                root.clone(),
                root.g("c").map(func!(|c| r.table(RANKS).get(c.nth(2)))),
                term!([]),
            ),
        })
    }))
}

/// Writes digest documents (chunks before their root: a reader that finds a
/// root finds its chunks). Soft durability: a digest lost in a crash is
/// rebuilt by the next keeper.
pub fn write_digest(docs: Vec<Value>) -> Term {
    r.table(RANKS)
        .insert(docs)
        .opt("conflict", "replace")
        .opt("durability", "soft")
}

/// Deletes digest documents by id.
pub fn delete_digest_docs(ids: Vec<String>) -> Term {
    r.table(RANKS).get_all(ids).delete()
}

/// Deletes every digest document of a board.
pub fn delete_digest(board: &str) -> Term {
    r.table(RANKS)
        .get_all([board.to_owned()])
        .opt("index", RANKS_BOARD_INDEX)
        .delete()
}

/// The keys of at most `limit` players of `board` in `walk` order from
/// `from` (inclusive) to `to` (exclusive, or the end): `[[score, player]]`.
pub fn span_keys(
    board: &str,
    walk: Walk,
    from: &RankKey,
    to: Option<&RankKey>,
    limit: usize,
) -> Term {
    ordered(
        walk,
        span(
            board,
            walk,
            (r.expr(from.0), r.expr(from.1.clone())),
            to.map(|k| (r.expr(k.0), r.expr(k.1.clone()))),
        ),
    )
    .limit(crate::reql::limit_arg(limit))
    .map(func!(|p| term!([p.clone().g("score"), p.g("player")])))
    .coerce_to("array")
}

/// How many players each span `[from, to)` of `board` holds, in one query:
/// an array of counts in the order of `spans`.
pub fn span_counts(board: &str, walk: Walk, spans: &[(RankKey, RankKey)]) -> Term {
    let data: Vec<Value> = spans
        .iter()
        .map(|(from, to)| serde_json::json!([from.0, from.1, to.0, to.1]))
        .collect();
    let board = board.to_owned();
    r.expr(data)
        .map(func!(|sp| span(
            &board,
            walk,
            (sp.clone().nth(0), sp.clone().nth(1)),
            Some((sp.clone().nth(2), sp.nth(3))),
        )
        .count()))
        .coerce_to("array")
}

// ------------------------------------------------------- the store's side

/// A board's digest as stored: its root and chunks.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredDigest {
    /// The root document.
    pub root: DigestRoot,
    /// Every chunk document of the board.
    pub chunks: Vec<DigestChunk>,
}

impl crate::Store {
    /// A board's stored digest, if it has one.
    pub async fn read_digest(&self, board: &str) -> Result<Option<StoredDigest>, StoreError> {
        #[derive(Deserialize)]
        struct Row {
            root: Option<DigestRoot>,
            #[serde(default)]
            chunks: Vec<Option<DigestChunk>>,
        }
        let row: Row = decode(single(self.run(read_digest(board)).await?)?)?;
        Ok(row.root.map(|root| StoredDigest {
            root,
            chunks: row.chunks.into_iter().flatten().collect(),
        }))
    }

    /// Writes digest documents (an insert that replaces).
    pub async fn write_digest(&self, docs: Vec<Value>) -> Result<(), StoreError> {
        if docs.is_empty() {
            return Ok(());
        }
        check_write(single(self.run(write_digest(docs)).await?)?)
    }

    /// Deletes digest documents by id.
    pub async fn delete_digest_docs(&self, ids: Vec<String>) -> Result<(), StoreError> {
        if ids.is_empty() {
            return Ok(());
        }
        check_write(single(self.run(delete_digest_docs(ids)).await?)?)
    }

    /// Deletes a board's whole digest.
    pub async fn delete_digest(&self, board: &str) -> Result<(), StoreError> {
        check_write(single(self.run(delete_digest(board)).await?)?)
    }

    /// The keys of at most `limit` players from `from` (inclusive) to `to`
    /// (exclusive), in `walk` order.
    pub async fn span_keys(
        &self,
        board: &str,
        walk: Walk,
        from: &RankKey,
        to: &RankKey,
        limit: usize,
    ) -> Result<Vec<RankKey>, StoreError> {
        // An array answer arrives as its items.
        let values = self
            .run(span_keys(board, walk, from, Some(to), limit))
            .await?;
        values.into_iter().map(decode).collect()
    }

    /// How many players each span `[from, to)` holds.
    pub async fn span_counts(
        &self,
        board: &str,
        walk: Walk,
        spans: &[(RankKey, RankKey)],
    ) -> Result<Vec<u64>, StoreError> {
        if spans.is_empty() {
            return Ok(Vec::new());
        }
        let values = self.run(span_counts(board, walk, spans)).await?;
        values.into_iter().map(decode).collect()
    }
}

fn check_write(value: Value) -> Result<(), StoreError> {
    let errors = value.get("errors").and_then(Value::as_u64).unwrap_or(0);
    if errors > 0 {
        let first = value
            .get("first_error")
            .and_then(Value::as_str)
            .unwrap_or("write reported errors");
        return Err(StoreError::Query(first.to_owned()));
    }
    Ok(())
}

fn decode<T: serde::de::DeserializeOwned>(value: Value) -> Result<T, StoreError> {
    serde_json::from_value(value).map_err(|e| StoreError::Decode(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cmp::Ordering;

    #[test]
    fn the_top_is_ahead_of_every_score_in_both_orders() {
        for walk in [Walk::Up, Walk::Down] {
            for s in [-domain::MAX_SCORE, 0, domain::MAX_SCORE] {
                let k = RankKey(s, "a".into());
                assert_eq!(RankKey::top(walk).cmp_in(&k, walk), Ordering::Less);
            }
        }
    }

    #[test]
    fn rank_order_breaks_ties_by_id_the_board_s_way() {
        let a = RankKey(5, "a".into());
        let b = RankKey(5, "b".into());
        assert_eq!(a.cmp_in(&b, Walk::Up), Ordering::Less);
        assert_eq!(a.cmp_in(&b, Walk::Down), Ordering::Greater);
        let low = RankKey(1, "z".into());
        assert_eq!(low.cmp_in(&a, Walk::Down), Ordering::Greater);
    }

    #[test]
    fn keys_are_stored_as_pairs() {
        let k = RankKey(-3, "ann".into());
        assert_eq!(
            serde_json::to_value(&k).unwrap(),
            serde_json::json!([-3, "ann"])
        );
    }
}
