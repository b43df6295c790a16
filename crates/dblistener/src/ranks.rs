//! The rank keeper: keeps the rank digest (see [`store::ranks`]) of every
//! board of the shards this worker holds, so that the origins answer a rank
//! at any depth by counting at most a leaf of the index.
//!
//! It follows the same changefeeds as the publish loop: each player's move
//! (old key, new key) adjusts the counts of the leaves it left and entered,
//! in memory. Every [`TICK`] it
//! - cuts a leaf that grew past [`LEAF_MAX`] players into leaves of
//!   [`LEAF_TARGET`], reading that leaf's keys from the index;
//! - merges leaves that shrank below [`LEAF_MIN`], and splits or merges
//!   chunks;
//! - recounts on the index every leaf a change touched, and every leaf of a
//!   digest loaded from the database or of a shard whose feed reopened,
//!   once no change has touched it for [`QUIET`];
//! - writes the root and the changed chunks of each changed board, under
//!   the shard's tenure.
//!
//! While writes flow, the counts follow the changes; once a board is quiet,
//! each leaf a change touched is recounted within about [`QUIET`] +
//! [`HOLD`] + a tick, and a count that a late or doubled change left wrong
//! is corrected then (and confirmed by a second count), which is the lag
//! docs/scaling.md states. Memory: a few dozen bytes per leaf, a leaf per 64–128 players.

use std::collections::{HashMap, HashSet, VecDeque};
use std::time::Duration;

use domain::{BoardId, Shards};
use serde_json::{json, Value};
use store::ranks::{
    chunk_id, DigestChunk, RankKey, StoredDigest, CHUNK_MAX, LEAF_MAX, LEAF_MIN, LEAF_TARGET,
};
use store::reql::Walk;
use store::{Store, StoreError};
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::leases::LeaseView;
use crate::metrics::Metrics;

/// How often the keeper cuts, recounts and writes.
pub const TICK: Duration = Duration::from_millis(100);
/// A leaf in doubt is recounted once no change has touched it for this long.
pub const QUIET: Duration = Duration::from_millis(100);
/// A recount is taken only if no change touches its leaves until this long
/// after its answer: a change committed before the count but delivered by
/// the feed after it would otherwise count twice.
pub const HOLD: Duration = Duration::from_millis(100);
/// Changes delivered this long before a read of the index was sent may
/// already be in what it reads.
const SLACK: Duration = Duration::from_millis(20);
/// A leaf in doubt that never goes quiet is recounted this often anyway.
const OVERDUE: Duration = Duration::from_secs(1);
/// A recount that changes raced with is taken anyway when it differs from
/// the leaf's count by more than this.
const RACE_SLACK: i64 = 8;
/// Keys read per query when a leaf is cut.
const CUT_PAGE: usize = 8192;
/// [`AUDIT_LEAVES`] leaves of one board are recounted this often, in turn
/// over the boards and their leaves: a safety net for an error nobody
/// noticed (every leaf a change touches, and every leaf of a shard whose
/// feed reopened, is recounted anyway). Each count has a fixed cost at the
/// database (a range read visits every hash shard of the table, about
/// 0.7 ms of CPU on RethinkDB 2.4.4), so the net is kept light: a board
/// of 1,000,000 players (15,625 leaves) is checked whole in about 16
/// minutes.
const AUDIT_EVERY: Duration = Duration::from_secs(1);
const AUDIT_LEAVES: usize = 16;
/// Leaves recounted per query.
const COUNTS_PER_QUERY: usize = 64;
/// Recount queries per board per pass.
const RECOUNTS_PER_PASS: usize = 8;
/// A chunk document no longer in the root is deleted this long after, once
/// no reader can still be holding a root that names it.
const CHUNK_GRACE: Duration = Duration::from_secs(10);
/// A shard's lease must have this much left for the keeper to write.
const WRITE_GUARD: Duration = Duration::from_millis(50);

/// What the publish loop passes on to the keeper, with when it arrived.
#[derive(Debug, Clone)]
pub enum RankEvent {
    /// A player's place in its board's rank order changed (see
    /// [`store::BoardChange::Moved`]).
    Moved {
        /// The player's board id.
        board: String,
        /// Where the player was ranked, `None` if it was not.
        old: Option<RankKey>,
        /// Where the player is ranked now, `None` if it is not.
        new: Option<RankKey>,
        /// When the publish loop received the change.
        at: Instant,
    },
    /// A board document appeared or disappeared.
    Board {
        /// The board's id.
        id: String,
        /// True when the board now exists, false when it was deleted.
        exists: bool,
    },
    /// A shard's feed (re)opened: changes may have been missed. `boards`
    /// are the shard's boards.
    ShardOpened {
        /// The shard whose feed opened.
        shard: u16,
        /// The ids of the shard's boards at that moment.
        boards: Vec<String>,
    },
}

/// The sending side, kept by the publish loop.
pub type RankEvents = mpsc::UnboundedSender<RankEvent>;

#[derive(Debug, Clone)]
struct Leaf {
    start: RankKey,
    count: i64,
    /// The count may be wrong: recount it when the leaf is quiet.
    doubt: bool,
    /// Last change applied to this leaf, by its arrival.
    touched: Option<Instant>,
    /// A recount of it is under way.
    counting: bool,
    /// When its last recount was sent.
    checked: Option<Instant>,
}

impl Leaf {
    fn new(start: RankKey, count: i64, doubt: bool) -> Self {
        Self {
            start,
            count,
            doubt,
            touched: None,
            counting: false,
            checked: None,
        }
    }
}

#[derive(Debug, Clone)]
struct Chunk {
    id: u64,
    leaves: Vec<Leaf>,
    dirty: bool,
    /// The digest version its document was last written at (0: never).
    written: u64,
}

/// One board's digest, in memory.
#[derive(Debug, Clone)]
pub struct BoardRanks {
    walk: Walk,
    chunks: Vec<Chunk>,
    next_chunk: u64,
    /// Bumped by every change of the leaves' bounds.
    generation: u64,
    version: u64,
    dirty: bool,
    audit_next: usize,
    /// Something happened since the last pass found nothing to do.
    care: bool,
    /// Chunk documents to delete once their grace has passed.
    doomed: Vec<String>,
}

/// A leaf's place: chunk index, leaf index.
type Place = (usize, usize);

impl BoardRanks {
    /// A board of which nothing is known: one leaf from the top whose count
    /// is unknown, so it is cut (read whole) at the next tick.
    pub fn unknown(walk: Walk) -> Self {
        let mut ranks = Self::empty(walk);
        ranks.chunks[0].leaves[0].count = i64::MAX;
        ranks
    }

    /// A board known to have no ranked player.
    pub fn empty(walk: Walk) -> Self {
        Self {
            walk,
            chunks: vec![Chunk {
                id: 0,
                leaves: vec![Leaf::new(RankKey::top(walk), 0, false)],
                dirty: true,
                written: 0,
            }],
            next_chunk: 1,
            generation: 0,
            version: 0,
            dirty: true,
            audit_next: 0,
            care: true,
            doomed: Vec::new(),
        }
    }

    /// The digest as stored, every count in doubt (changes made after it
    /// was written may be missing from it).
    pub fn from_stored(walk: Walk, stored: &StoredDigest, board: &str) -> Option<Self> {
        let root = &stored.root;
        if root.asc != (walk == Walk::Up) || root.c.is_empty() {
            return None;
        }
        let by_id: HashMap<&str, &DigestChunk> =
            stored.chunks.iter().map(|c| (c.id.as_str(), c)).collect();
        let mut chunks = Vec::with_capacity(root.c.len());
        let mut next_chunk = 0;
        for (i, entry) in root.c.iter().enumerate() {
            let (start, cum, id) = (&entry.start, &entry.cum, &entry.id);
            let end = root.c.get(i + 1).map_or(root.n, |next| next.cum);
            let total = end.saturating_sub(*cum) as i64;
            let k = id
                .strip_prefix(&format!("{board}#"))
                .and_then(|k| k.parse::<u64>().ok())?;
            next_chunk = next_chunk.max(k + 1);
            let leaves = match by_id.get(id.as_str()) {
                Some(doc) if !doc.l.is_empty() => {
                    let mut leaves = Vec::with_capacity(doc.l.len());
                    for (j, (key, at)) in doc.l.iter().enumerate() {
                        let next = doc.l.get(j + 1).map_or(total, |n| n.1 as i64);
                        leaves.push(Leaf::new(key.clone(), next - *at as i64, true));
                    }
                    leaves[0].start = start.clone();
                    leaves
                }
                _ => vec![Leaf::new(start.clone(), total, true)],
            };
            chunks.push(Chunk {
                id: k,
                leaves,
                // Written before chunks had versions: written again, so
                // that origins can keep a copy of it.
                dirty: entry.v == 0,
                written: entry.v,
            });
        }
        chunks[0].leaves[0].start = RankKey::top(walk);
        let dirty = chunks.iter().any(|c| c.dirty);
        Some(Self {
            walk,
            chunks,
            next_chunk,
            generation: 0,
            version: root.v,
            dirty,
            audit_next: 0,
            care: true,
            doomed: Vec::new(),
        })
    }

    /// The ranked players, as the leaves count them.
    pub fn total(&self) -> u64 {
        self.leaves().map(|l| l.count.max(0) as u64).sum()
    }

    fn leaves(&self) -> impl Iterator<Item = &Leaf> {
        self.chunks.iter().flat_map(|c| c.leaves.iter())
    }

    /// How many leaves the digest holds, across all its chunks.
    pub fn leaf_count(&self) -> usize {
        self.chunks.iter().map(|c| c.leaves.len()).sum()
    }

    /// How many leaves are in doubt: waiting to be recounted.
    pub fn doubtful(&self) -> usize {
        self.leaves().filter(|l| l.doubt).count()
    }

    /// The leaf holding `key`.
    fn locate(&self, key: &RankKey) -> Place {
        let walk = self.walk;
        let after = |start: &RankKey| start.cmp_in(key, walk) != std::cmp::Ordering::Greater;
        let c = self
            .chunks
            .partition_point(|c| after(&c.leaves[0].start))
            .saturating_sub(1);
        let l = self.chunks[c]
            .leaves
            .partition_point(|l| after(&l.start))
            .saturating_sub(1);
        (c, l)
    }

    /// Where the leaf at `place` ends: the next leaf's start, or past the
    /// bottom of the board.
    fn end_of(&self, (c, l): Place) -> RankKey {
        if let Some(next) = self.chunks[c].leaves.get(l + 1) {
            return next.start.clone();
        }
        match self.chunks.get(c + 1) {
            Some(next) => next.leaves[0].start.clone(),
            None => RankKey::bottom(self.walk),
        }
    }

    fn leaf_mut(&mut self, (c, l): Place) -> &mut Leaf {
        self.chunks[c].dirty = true;
        &mut self.chunks[c].leaves[l]
    }

    /// Applies a player's move, which arrived at `at`.
    pub fn apply(&mut self, old: Option<&RankKey>, new: Option<&RankKey>, at: Instant) {
        for (key, delta) in [(old, -1), (new, 1)] {
            let Some(key) = key else { continue };
            let place = self.locate(key);
            let leaf = self.leaf_mut(place);
            if leaf.count != i64::MAX {
                leaf.count += delta;
            }
            leaf.touched = Some(at);
            // The delta keeps the count current while writes flow; the leaf
            // is also recounted once it has been quiet for QUIET, so that a
            // change the feed delivered late, or twice, or that belonged to
            // a board deleted and created again, never stays counted wrong
            // after the board is quiet. A recount costs at most a leaf.
            leaf.doubt = true;
        }
        self.dirty = true;
        self.care = true;
    }

    /// Puts every leaf in doubt (changes may have been missed).
    pub fn doubt_all(&mut self) {
        for chunk in &mut self.chunks {
            for leaf in &mut chunk.leaves {
                leaf.doubt = true;
            }
        }
        self.care = true;
    }

    /// Marks a read of the index sent at `sent`: a change already applied
    /// that arrived shortly before it may be in what it read as well.
    fn read_index(&mut self, sent: Instant) {
        let from = sent.checked_sub(SLACK).unwrap_or(sent);
        self.care = true;
        for chunk in &mut self.chunks {
            for leaf in &mut chunk.leaves {
                if leaf.touched.is_some_and(|t| t >= from) {
                    leaf.doubt = true;
                }
            }
        }
    }

    /// The first leaf holding more than [`LEAF_MAX`] players.
    fn oversized(&self) -> Option<Place> {
        self.chunks.iter().enumerate().find_map(|(c, chunk)| {
            chunk
                .leaves
                .iter()
                .position(|l| l.count > LEAF_MAX as i64)
                .map(|l| (c, l))
        })
    }

    /// Replaces the leaf at `place` by leaves starting at its own start and
    /// at each of `starts`, holding `counts`.
    fn cut(&mut self, (c, l): Place, starts: Vec<RankKey>, counts: Vec<i64>) {
        let old = self.chunks[c].leaves[l].clone();
        let mut pieces = Vec::with_capacity(counts.len());
        for (start, count) in std::iter::once(old.start.clone()).chain(starts).zip(counts) {
            // Counted at the read; confirmed by a recount once quiet.
            let mut leaf = Leaf::new(start, count, true);
            leaf.touched = old.touched;
            pieces.push(leaf);
        }
        if pieces.is_empty() {
            pieces.push(Leaf::new(old.start, 0, false));
        }
        self.chunks[c].leaves.splice(l..=l, pieces);
        self.chunks[c].dirty = true;
        self.moved();
        self.dirty = true;
        self.care = true;
    }

    /// The leaves' places changed: a recount in flight names leaves by
    /// place, so its answer will be set aside (its generation is past), and
    /// no leaf is left marked as being counted by it. A mark left behind
    /// would keep the leaf from ever being recounted again, and a wrong
    /// count in it wrong for good.
    fn moved(&mut self) {
        self.generation += 1;
        for leaf in self.chunks.iter_mut().flat_map(|c| c.leaves.iter_mut()) {
            leaf.counting = false;
        }
    }

    /// Merges small leaves into their neighbours, then splits full chunks
    /// and merges small ones.
    fn rebalance(&mut self) {
        let mut changed = false;
        for chunk in &mut self.chunks {
            let mut l = 0;
            while l + 1 < chunk.leaves.len() {
                let (a, b) = (&chunk.leaves[l], &chunk.leaves[l + 1]);
                let small = a.count < LEAF_MIN as i64 || b.count < LEAF_MIN as i64;
                if small && a.count + b.count <= LEAF_TARGET as i64 && !a.counting && !b.counting {
                    let b = chunk.leaves.remove(l + 1);
                    let a = &mut chunk.leaves[l];
                    a.count += b.count;
                    a.doubt |= b.doubt;
                    a.touched = a.touched.max(b.touched);
                    chunk.dirty = true;
                    changed = true;
                } else {
                    l += 1;
                }
            }
        }
        let mut c = 0;
        while c < self.chunks.len() {
            if self.chunks[c].leaves.len() > CHUNK_MAX {
                let half = self.chunks[c].leaves.len() / 2;
                let rest = self.chunks[c].leaves.split_off(half);
                self.chunks[c].dirty = true;
                let id = self.next_chunk;
                self.next_chunk += 1;
                self.chunks.insert(
                    c + 1,
                    Chunk {
                        id,
                        leaves: rest,
                        dirty: true,
                        written: 0,
                    },
                );
                changed = true;
                continue;
            } else if c > 0
                && self.chunks[c].leaves.len() + self.chunks[c - 1].leaves.len() <= CHUNK_MAX / 2
            {
                let gone = self.chunks.remove(c);
                self.doomed.push(gone.id.to_string());
                self.chunks[c - 1].leaves.extend(gone.leaves);
                self.chunks[c - 1].dirty = true;
                changed = true;
                continue;
            }
            c += 1;
        }
        if changed {
            self.moved();
            self.dirty = true;
        }
    }

    /// Up to `most` leaves in doubt that no change touched for [`QUIET`]
    /// and that are not being counted, with their spans.
    fn to_recount(&self, now: Instant, most: usize) -> Vec<(Place, (RankKey, RankKey))> {
        let mut out = Vec::new();
        for (c, chunk) in self.chunks.iter().enumerate() {
            for (l, leaf) in chunk.leaves.iter().enumerate() {
                if out.len() >= most {
                    return out;
                }
                let quiet = leaf.touched.is_none_or(|t| now.duration_since(t) >= QUIET);
                // A leaf that never goes quiet is still recounted now and
                // then: a gross error must not wait for a pause.
                let overdue = leaf
                    .checked
                    .is_none_or(|t| now.duration_since(t) >= OVERDUE);
                if leaf.doubt && (quiet || overdue) && !leaf.counting && leaf.count != i64::MAX {
                    out.push(((c, l), (leaf.start.clone(), self.end_of((c, l)))));
                }
            }
        }
        out
    }

    /// The documents to write: each changed chunk, then the root. Clears
    /// the changed marks.
    ///
    /// Versions are times in microseconds (or one more than the last, if
    /// the clock is behind it), so that an origin's copy of a digest is
    /// never taken for a digest of the same board deleted and created
    /// again, whose versions start anew.
    pub fn documents(&mut self, board: &str) -> (Vec<Value>, Value) {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_micros() as u64);
        self.version = (self.version + 1).max(now);
        let mut chunks = Vec::new();
        let mut root = Vec::with_capacity(self.chunks.len());
        let mut cum: u64 = 0;
        for chunk in &mut self.chunks {
            let id = chunk_id(board, chunk.id);
            if chunk.dirty {
                chunk.written = self.version;
            }
            root.push(json!([chunk.leaves[0].start, cum, id, chunk.written]));
            let mut inner: u64 = 0;
            let mut leaves = Vec::with_capacity(chunk.leaves.len());
            for leaf in &chunk.leaves {
                leaves.push(json!([leaf.start, inner]));
                inner += leaf.count.clamp(0, i64::MAX / 2) as u64;
            }
            if chunk.dirty {
                chunks.push(json!({ "id": id, "board": board, "v": chunk.written, "l": leaves }));
                chunk.dirty = false;
            }
            cum += inner;
        }
        self.dirty = false;
        let root = json!({
            "id": board,
            "board": board,
            "v": self.version,
            "n": cum,
            "asc": self.walk == Walk::Up,
            "c": root,
        });
        (chunks, root)
    }

    /// Marks the leaves of `spans` as being counted by a recount sent at
    /// `sent`.
    fn counting(&mut self, spans: &[(Place, (RankKey, RankKey))], sent: Instant) {
        for &((c, l), _) in spans {
            let leaf = &mut self.chunks[c].leaves[l];
            leaf.counting = true;
            leaf.checked = Some(sent);
        }
    }

    /// Takes the answer of a recount sent at `sent` when the leaves were
    /// at `generation`: `counts`, each leaf's players by place.
    fn take(&mut self, generation: u64, sent: Instant, counts: &[(Place, u64)]) -> Taken {
        let mut taken = Taken::default();
        self.care = true;
        if self.generation != generation {
            // The places name other leaves now (and no leaf is marked as
            // being counted by this recount any more: see `moved`).
            taken.aside = counts.len() as u64;
            return taken;
        }
        for &((c, l), count) in counts {
            let Some(leaf) = self.chunks.get_mut(c).and_then(|ch| ch.leaves.get_mut(l)) else {
                continue;
            };
            leaf.counting = false;
            // A change since the count was sent may or may not be in it.
            let since = leaf.touched.is_some_and(|t| t + SLACK >= sent);
            let count = count as i64;
            // A count that changes raced with may be off by those changes:
            // set aside, unless it is far from the leaf's, which only a
            // gross error explains.
            let gross = (count - leaf.count).abs() > RACE_SLACK;
            if since && !gross {
                taken.aside += 1;
                continue;
            }
            if !since && leaf.count == count {
                // Confirmed: the count agrees with the index.
                leaf.doubt = false;
                taken.confirmed += 1;
                continue;
            }
            // Corrected, and still in doubt until a later count agrees: a
            // change delivered late by the feed would otherwise stay
            // counted twice.
            if !since {
                taken.wrong.push((leaf.count, count));
            }
            leaf.count = count;
            self.chunks[c].dirty = true;
            self.dirty = true;
            taken.corrected += 1;
        }
        taken
    }

    /// Puts the next [`AUDIT_LEAVES`] leaves of this board in doubt, in turn.
    fn audit(&mut self) {
        let total = self.leaf_count();
        if total == 0 {
            return;
        }
        let from = self.audit_next % total;
        // Round again from the first leaf once the last has had its turn.
        self.audit_next = if from + AUDIT_LEAVES >= total {
            0
        } else {
            from + AUDIT_LEAVES
        };
        for leaf in self
            .chunks
            .iter_mut()
            .flat_map(|c| c.leaves.iter_mut())
            .skip(from)
            .take(AUDIT_LEAVES)
        {
            leaf.doubt = true;
        }
        self.care = true;
    }

    /// Whether a pass has anything to do: a change, a count in doubt, a
    /// leaf to cut, something to write.
    fn needs_care(&self) -> bool {
        self.care || self.dirty
    }
}

/// A recount sent, whose answer is taken once [`HOLD`] has passed.
struct Recount {
    board: String,
    generation: u64,
    sent: Instant,
    take_at: Instant,
    counts: Vec<(Place, u64)>,
}

/// What one recount's answer did to a board's leaves.
#[derive(Debug, Default, PartialEq, Eq)]
struct Taken {
    confirmed: u64,
    corrected: u64,
    aside: u64,
    /// The corrections made with no change racing the count: (was, is).
    wrong: Vec<(i64, i64)>,
}

/// The keeper task's state.
pub struct RankKeeper {
    store: Store,
    shards: Shards,
    leases: LeaseView,
    rx: mpsc::UnboundedReceiver<RankEvent>,
    boards: HashMap<String, BoardRanks>,
    /// Boards to load from the database (`true`: a new board, whose stored
    /// digest, if any, is stale), and the set of them.
    to_load: VecDeque<(String, bool)>,
    loading: HashSet<String>,
    recounts: Vec<Recount>,
    doomed: Vec<(Instant, Vec<String>)>,
    /// Deleted boards whose digest is still to delete.
    gone: Vec<String>,
    /// The boards whose turn to be audited is still to come.
    audit_turns: VecDeque<String>,
    /// When the next chunk is audited.
    audit_at: Option<Instant>,
    metrics: Metrics,
}

impl RankKeeper {
    /// A keeper of the boards of the shards `leases` holds, and the sender
    /// the publish loop passes changes on with.
    pub fn new(
        store: Store,
        shards: Shards,
        leases: LeaseView,
        metrics: Metrics,
    ) -> (Self, RankEvents) {
        let (tx, rx) = mpsc::unbounded_channel();
        (
            Self {
                store,
                shards,
                leases,
                rx,
                boards: HashMap::new(),
                to_load: VecDeque::new(),
                loading: HashSet::new(),
                recounts: Vec::new(),
                doomed: Vec::new(),
                gone: Vec::new(),
                audit_turns: VecDeque::new(),
                audit_at: None,
                metrics,
            },
            tx,
        )
    }

    /// Keeps the digests until `shutdown` completes or the publish loop
    /// (the sender) is gone.
    pub async fn run_until_stopped(mut self, shutdown: impl std::future::Future<Output = ()>) {
        tokio::pin!(shutdown);
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                biased;
                _ = &mut shutdown => return,
                event = self.rx.recv() => match event {
                    Some(event) => self.on_event(event),
                    None => return,
                },
                _ = tick.tick() => self.step().await,
            }
        }
    }

    fn held(&self, board: &str, now: Instant) -> bool {
        self.leases
            .borrow()
            .get(&self.shards.of_board(board))
            .is_some_and(|t| t.valid_until > now + WRITE_GUARD)
    }

    fn on_event(&mut self, event: RankEvent) {
        match event {
            RankEvent::Moved {
                board,
                old,
                new,
                at,
            } => match self.boards.get_mut(&board) {
                Some(ranks) => ranks.apply(old.as_ref(), new.as_ref(), at),
                None => self.load_later(board, false),
            },
            RankEvent::Board { id, exists: true } => {
                // A new board (or one created again under this id): its
                // digest starts afresh, from what its index holds.
                self.boards.remove(&id);
                self.to_load.retain(|(b, _)| b != &id);
                self.loading.remove(&id);
                self.load_later(id, true);
            }
            RankEvent::Board { id, exists: false } => {
                self.boards.remove(&id);
                self.loading.remove(&id);
                self.to_load.retain(|(b, _)| b != &id);
                // Deleted in the keeper's own order: before a board created
                // again under the id writes a digest of its own.
                self.gone.push(id);
            }
            RankEvent::ShardOpened { shard, boards } => {
                let shards = self.shards;
                for (board, ranks) in &mut self.boards {
                    if shards.of_board(board) == shard {
                        ranks.doubt_all();
                    }
                }
                for board in boards {
                    if !self.boards.contains_key(&board) {
                        self.load_later(board, false);
                    }
                }
            }
        }
    }

    fn load_later(&mut self, board: String, fresh: bool) {
        if self.loading.insert(board.clone()) {
            self.to_load.push_back((board, fresh));
        }
    }

    /// Applies every change that has arrived. Called before each read of
    /// the index, so that a change that arrived before the read is never
    /// applied on top of a count that already holds it.
    fn drain(&mut self) {
        while let Ok(event) = self.rx.try_recv() {
            self.on_event(event);
        }
    }

    /// One pass: loads, cuts, recounts, rebalances and writes.
    pub async fn step(&mut self) {
        self.drain();
        for id in std::mem::take(&mut self.gone) {
            if let Err(e) = self.store.delete_digest(&id).await {
                log::debug!("digest of deleted board {id:?} not deleted: {e}");
                self.gone.push(id);
            }
        }
        // Boards of shards no longer held are someone else's.
        let (shards, leases) = (self.shards, self.leases.borrow().clone());
        self.boards
            .retain(|b, _| leases.contains_key(&shards.of_board(b)));
        self.load_some().await;
        let now = Instant::now();
        self.take_recounts(now);
        // One chunk of one board is recounted in turn every pass, so that an
        // error nobody noticed does not last, at a cost that does not grow
        // with the number of boards.
        if self.audit_at.is_none_or(|t| t <= now) {
            self.audit_at = Some(now + AUDIT_EVERY);
            if self.audit_turns.is_empty() {
                self.audit_turns = self.boards.keys().cloned().collect();
            }
            if let Some(board) = self.audit_turns.pop_front() {
                if let Some(ranks) = self.boards.get_mut(&board) {
                    ranks.audit();
                }
            }
        }
        let boards: Vec<String> = self.boards.keys().cloned().collect();
        for board in boards {
            if let Err(e) = self.keep(&board).await {
                log::debug!("rank digest of board {board:?}: {e}");
            }
        }
        self.delete_doomed(Instant::now()).await;
        self.metrics.rank_boards.set(self.boards.len() as i64);
        self.metrics
            .rank_leaves
            .set(self.boards.values().map(|b| b.leaf_count() as i64).sum());
        self.metrics
            .rank_doubtful_leaves
            .set(self.boards.values().map(|b| b.doubtful() as i64).sum());
    }

    /// Loads up to a few queued boards: the stored digest, every count in
    /// doubt; or, for a new board or one without a digest, a digest to be
    /// made by reading its index.
    async fn load_some(&mut self) {
        const PER_STEP: usize = 32;
        let leases = self.leases.borrow().clone();
        for _ in 0..PER_STEP {
            let Some((board, fresh)) = self.to_load.pop_front() else {
                return;
            };
            self.loading.remove(&board);
            if !leases.contains_key(&self.shards.of_board(&board)) {
                continue;
            }
            match self.load(&board, fresh).await {
                Ok(Some(ranks)) => {
                    log::debug!(
                        "rank digest of {board:?} loaded: {} leaves, {} players, {} in doubt",
                        ranks.leaf_count(),
                        ranks.total(),
                        ranks.doubtful()
                    );
                    self.boards.insert(board, ranks);
                }
                Ok(None) => {}
                Err(e) => {
                    log::debug!("cannot load the rank digest of {board:?}: {e}");
                    self.load_later(board, fresh);
                    return;
                }
            }
        }
    }

    async fn load(&self, board: &str, fresh: bool) -> Result<Option<BoardRanks>, StoreError> {
        let Ok(id) = BoardId::parse(board) else {
            return Ok(None);
        };
        let Some(doc) = self.store.board(&id).await? else {
            return Ok(None);
        };
        let walk = Walk::of(doc.rules.order);
        if !fresh {
            if let Some(stored) = self.store.read_digest(board).await? {
                // Every leaf of a stored digest starts in doubt.
                if let Some(ranks) = BoardRanks::from_stored(walk, &stored, board) {
                    return Ok(Some(ranks));
                }
            }
        }
        Ok(Some(BoardRanks::unknown(walk)))
    }

    /// Takes the recounts whose hold has passed.
    fn take_recounts(&mut self, now: Instant) {
        let (due, later): (Vec<Recount>, Vec<Recount>) = std::mem::take(&mut self.recounts)
            .into_iter()
            .partition(|r| r.take_at <= now);
        self.recounts = later;
        for recount in due {
            let Some(ranks) = self.boards.get_mut(&recount.board) else {
                continue;
            };
            let taken = ranks.take(recount.generation, recount.sent, &recount.counts);
            self.metrics.rank_corrections.inc_by(taken.corrected);
            for (was, count) in &taken.wrong {
                log::debug!(
                    "rank digest of {:?}: a leaf held {count}, not {was}",
                    recount.board
                );
            }
            log::trace!(
                "recount of {:?}: {} confirmed, {} corrected, {} set aside",
                recount.board,
                taken.confirmed,
                taken.corrected,
                taken.aside
            );
        }
    }

    /// Cuts, recounts, rebalances and writes one board.
    async fn keep(&mut self, board: &str) -> Result<(), StoreError> {
        if !self.boards.get(board).is_some_and(BoardRanks::needs_care) {
            return Ok(());
        }
        // Cut every oversized leaf (a board read for the first time is one).
        while let Some(place) = self.boards.get(board).and_then(BoardRanks::oversized) {
            self.cut(board, place).await?;
        }
        let Some(ranks) = self.boards.get_mut(board) else {
            return Ok(());
        };
        ranks.rebalance();
        // Several recounts per pass, so that a new holder confirms a large
        // digest in seconds rather than at one query per tick.
        for _ in 0..RECOUNTS_PER_PASS {
            if !self.recount(board).await? {
                break;
            }
        }
        self.write(board).await?;
        // Nothing more to do until something happens, unless counts are
        // still in doubt (waiting for quiet, or for a recount's answer).
        if let Some(ranks) = self.boards.get_mut(board) {
            let waiting = ranks.leaves().any(|l| l.doubt || l.counting);
            ranks.care = waiting || ranks.oversized().is_some();
        }
        Ok(())
    }

    /// Sends one recount of up to [`COUNTS_PER_QUERY`] leaves in doubt;
    /// whether there was any.
    async fn recount(&mut self, board: &str) -> Result<bool, StoreError> {
        let now = Instant::now();
        let Some(ranks) = self.boards.get_mut(board) else {
            return Ok(false);
        };
        let spans = ranks.to_recount(now, COUNTS_PER_QUERY);
        if !spans.is_empty() {
            // Events that arrive from here on are judged by their arrival
            // against the count's time; those before are applied first.
            self.drain();
            let Some(ranks) = self.boards.get_mut(board) else {
                return Ok(false);
            };
            let spans = ranks.to_recount(Instant::now(), COUNTS_PER_QUERY);
            if spans.is_empty() {
                return Ok(false);
            }
            let (walk, generation) = (ranks.walk, ranks.generation);
            let sent = Instant::now();
            ranks.counting(&spans, sent);
            let ranges: Vec<(RankKey, RankKey)> = spans.iter().map(|(_, s)| s.clone()).collect();
            let result = self.store.span_counts(board, walk, &ranges).await;
            let done = Instant::now();
            let Some(ranks) = self.boards.get_mut(board) else {
                return Ok(false);
            };
            match result {
                Ok(counts) => {
                    ranks.read_index(sent);
                    self.metrics.rank_recounts.inc_by(counts.len() as u64);
                    self.recounts.push(Recount {
                        board: board.to_owned(),
                        generation,
                        sent,
                        take_at: done + HOLD,
                        counts: spans.iter().map(|(p, _)| *p).zip(counts).collect(),
                    });
                }
                Err(e) => {
                    if ranks.generation == generation {
                        for (c, l) in spans.iter().map(|(p, _)| *p) {
                            ranks.chunks[c].leaves[l].counting = false;
                        }
                    }
                    return Err(e);
                }
            }
            return Ok(true);
        }
        Ok(false)
    }

    /// Reads the keys of an oversized leaf and cuts it into leaves of
    /// [`LEAF_TARGET`].
    async fn cut(&mut self, board: &str, place: Place) -> Result<(), StoreError> {
        // Every change that arrived before the read is applied before it,
        // so the pieces' counts replace them rather than add to them.
        self.drain();
        let Some(ranks) = self.boards.get(board) else {
            return Ok(());
        };
        let Some(place) = ranks
            .oversized()
            .filter(|p| *p == place)
            .or(ranks.oversized())
        else {
            return Ok(());
        };
        let (walk, generation) = (ranks.walk, ranks.generation);
        let start = ranks.chunks[place.0].leaves[place.1].start.clone();
        let end = ranks.end_of(place);
        let sent = Instant::now();
        let mut starts = Vec::new();
        let mut counts = Vec::new();
        let mut from = start;
        let mut held: i64 = 0;
        let mut first_page = true;
        loop {
            let keys = self
                .store
                .span_keys(board, walk, &from, &end, CUT_PAGE)
                .await?;
            // After the first page, `from` is the last key read: skip it.
            let skip = usize::from(!first_page && !keys.is_empty());
            first_page = false;
            let full = keys.len() == CUT_PAGE;
            for key in keys.iter().skip(skip) {
                if held == LEAF_TARGET as i64 {
                    starts.push(key.clone());
                    counts.push(held);
                    held = 0;
                }
                held += 1;
            }
            match keys.last() {
                Some(last) if full => from = last.clone(),
                _ => break,
            }
        }
        counts.push(held);
        // A short last leaf joins the one before it.
        if counts.len() > 1 && held < LEAF_MIN as i64 {
            let last = counts.pop().unwrap_or(0);
            starts.pop();
            if let Some(prev) = counts.last_mut() {
                *prev += last;
            }
        }
        self.metrics.rank_cuts.inc();
        let Some(ranks) = self.boards.get_mut(board) else {
            return Ok(());
        };
        if ranks.generation != generation {
            return Ok(());
        }
        ranks.cut(place, starts, counts);
        ranks.read_index(sent);
        Ok(())
    }

    /// Writes a changed board's digest, if its shard is still held: the
    /// changed chunks, then the root.
    async fn write(&mut self, board: &str) -> Result<(), StoreError> {
        let now = Instant::now();
        if !self.held(board, now) {
            return Ok(());
        }
        let Some(ranks) = self.boards.get_mut(board) else {
            return Ok(());
        };
        if !ranks.dirty {
            return Ok(());
        }
        let (chunks, root) = ranks.documents(board);
        let root_n = root["n"].clone();
        let doomed: Vec<String> = ranks
            .doomed
            .drain(..)
            .map(|k| format!("{board}#{k}"))
            .collect();
        let written = async {
            self.store.write_digest(chunks).await?;
            self.store.write_digest(vec![root]).await
        }
        .await;
        if let Err(e) = written {
            if let Some(ranks) = self.boards.get_mut(board) {
                // Written again, whole, at the next tick.
                for chunk in &mut ranks.chunks {
                    chunk.dirty = true;
                }
                ranks.dirty = true;
            }
            return Err(e);
        }
        self.metrics.rank_writes.inc();
        log::debug!("rank digest of {board:?} written: {}", root_n);
        if !doomed.is_empty() {
            self.doomed.push((now + CHUNK_GRACE, doomed));
        }
        Ok(())
    }

    async fn delete_doomed(&mut self, now: Instant) {
        let (due, later): (Vec<_>, Vec<_>) = std::mem::take(&mut self.doomed)
            .into_iter()
            .partition(|(at, _)| *at <= now);
        self.doomed = later;
        for (_, ids) in due {
            if let Err(e) = self.store.delete_digest_docs(ids).await {
                log::debug!("old rank chunks not deleted: {e}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use store::ranks::DigestRoot;

    fn key(s: i64, p: &str) -> RankKey {
        RankKey(s, p.into())
    }

    /// A board of `n` players `p0000`… with score = index, cut by hand into
    /// leaves of `per` players, in `walk` order.
    fn board(walk: Walk, n: i64, per: i64) -> (BoardRanks, Vec<RankKey>) {
        let mut keys: Vec<RankKey> = (0..n).map(|i| key(i, &format!("p{i:04}"))).collect();
        keys.sort_by(|a, b| a.cmp_in(b, walk));
        let mut ranks = BoardRanks::empty(walk);
        let starts: Vec<RankKey> = keys
            .iter()
            .skip(per as usize)
            .step_by(per as usize)
            .cloned()
            .collect();
        let mut counts = vec![per; starts.len()];
        counts.push(n - per * starts.len() as i64);
        ranks.cut((0, 0), starts, counts);
        ranks.rebalance();
        // As if every piece's count had been confirmed.
        for leaf in ranks.chunks.iter_mut().flat_map(|c| c.leaves.iter_mut()) {
            leaf.doubt = false;
        }
        (ranks, keys)
    }

    /// The rank of `k` as an origin computes it from the documents, with
    /// `live` the players of the key's leaf ahead of it, counted from `all`.
    fn rank_from_docs(
        walk: Walk,
        (root, chunks): &(DigestRoot, Vec<DigestChunk>),
        all: &[RankKey],
        k: &RankKey,
    ) -> u64 {
        let ahead = |start: &RankKey| start.cmp_in(k, walk) != std::cmp::Ordering::Greater;
        let entry = root.c.iter().rfind(|e| ahead(&e.start)).unwrap();
        let (cum, id) = (&entry.cum, &entry.id);
        let chunk = chunks.iter().find(|c| &c.id == id).unwrap();
        let (leaf_start, inner) = chunk.l.iter().rfind(|e| ahead(&e.0)).unwrap();
        let live = all
            .iter()
            .filter(|x| {
                x.cmp_in(leaf_start, walk) != std::cmp::Ordering::Less
                    && x.cmp_in(k, walk) == std::cmp::Ordering::Less
            })
            .count() as u64;
        cum + inner + live + 1
    }

    fn stored(ranks: &mut BoardRanks) -> (DigestRoot, Vec<DigestChunk>) {
        let (chunks, root) = ranks.documents("b");
        (
            serde_json::from_value(root).unwrap(),
            chunks
                .into_iter()
                .map(|c| serde_json::from_value(c).unwrap())
                .collect(),
        )
    }

    #[test]
    fn ranks_from_the_documents_are_positions_in_both_orders() {
        for walk in [Walk::Up, Walk::Down] {
            let (mut ranks, keys) = board(walk, 20_000, 64);
            assert!(ranks.chunks.len() > 1, "several chunks");
            assert_eq!(ranks.total(), 20_000);
            let docs = stored(&mut ranks);
            for (i, k) in keys.iter().enumerate().step_by(997) {
                assert_eq!(rank_from_docs(walk, &docs, &keys, k), i as u64 + 1);
            }
        }
    }

    #[test]
    fn moves_keep_the_counts_and_oversized_leaves_are_found() {
        let walk = Walk::Down;
        let (mut ranks, _) = board(walk, 1000, 64);
        let now = Instant::now();
        // 100 players move to the top: the first leaf grows past the max.
        for i in 0..100 {
            let p = format!("p{i:04}");
            ranks.apply(Some(&key(i, &p)), Some(&key(5000 + i, &p)), now);
        }
        assert_eq!(ranks.total(), 1000);
        assert_eq!(ranks.oversized(), Some((0, 0)));
        assert_eq!(ranks.chunks[0].leaves[0].count, 164);
        assert_eq!(
            ranks.doubtful(),
            3,
            "the leaves the moves left and entered wait for a recount"
        );
    }

    #[test]
    fn the_audit_goes_round_every_leaf_a_few_at_a_time() {
        // 40 leaves of 20: three audits cover 16, 16 and the last 8 of
        // them; the fourth starts over.
        let (mut ranks, _) = board(Walk::Down, 800, 20);
        assert_eq!(ranks.leaf_count(), 40);
        let doubt = |r: &BoardRanks| -> Vec<usize> {
            r.leaves()
                .enumerate()
                .filter(|(_, l)| l.doubt)
                .map(|(i, _)| i)
                .collect()
        };
        let clear = |r: &mut BoardRanks| {
            for leaf in r.chunks.iter_mut().flat_map(|c| c.leaves.iter_mut()) {
                leaf.doubt = false;
            }
        };
        for want in [0..16, 16..32, 32..40, 0..16] {
            ranks.audit();
            assert_eq!(doubt(&ranks), want.collect::<Vec<_>>());
            clear(&mut ranks);
        }
    }

    #[test]
    fn every_changed_leaf_is_recounted_once_quiet() {
        let (mut ranks, _) = board(Walk::Up, 500, 64);
        let t0 = Instant::now();
        ranks.apply(None, Some(&key(3, "new")), t0);
        assert_eq!(ranks.doubtful(), 1);
        ranks.apply(None, Some(&key(400, "later")), t0 + Duration::from_secs(5));
        assert_eq!(
            ranks.doubtful(),
            2,
            "every changed leaf waits for a recount"
        );
    }

    #[test]
    fn small_leaves_merge_and_full_chunks_split() {
        let (mut ranks, _) = board(Walk::Up, 64 * 300, 64);
        assert!(ranks.chunks.iter().all(|c| c.leaves.len() <= CHUNK_MAX));
        let leaves = ranks.leaf_count();
        ranks.chunks[0].leaves[1].count = 3;
        ranks.chunks[0].leaves[2].count = 3;
        ranks.rebalance();
        assert_eq!(ranks.leaf_count(), leaves - 1);
    }

    #[test]
    fn a_stored_digest_reads_back_with_its_counts_in_doubt() {
        let (mut ranks, _) = board(Walk::Down, 30_000, 64);
        let (root, chunks) = stored(&mut ranks);
        let stored = StoredDigest { root, chunks };
        let back = BoardRanks::from_stored(Walk::Down, &stored, "b").unwrap();
        assert_eq!(back.total(), 30_000);
        assert_eq!(back.leaf_count(), ranks.leaf_count());
        assert!(BoardRanks::from_stored(Walk::Up, &stored, "b").is_none());
    }

    #[test]
    fn a_recount_overtaken_by_a_cut_leaves_no_leaf_unrecountable() {
        // Four leaves of 64 in doubt; one of them is counted wrong.
        let (mut ranks, keys) = board(Walk::Down, 256, 64);
        ranks.doubt_all();
        ranks.chunks[0].leaves[3].count = 70;
        let sent = Instant::now();
        let spans = ranks.to_recount(sent, COUNTS_PER_QUERY);
        assert_eq!(spans.len(), 4);
        ranks.counting(&spans, sent);
        let generation = ranks.generation;
        // While the count is out, the first leaf is cut in two: every
        // later leaf's place moves on by one.
        ranks.cut((0, 0), vec![keys[32].clone()], vec![32, 32]);
        let counts: Vec<(Place, u64)> = spans.iter().map(|(p, _)| (*p, 64)).collect();
        let taken = ranks.take(generation, sent, &counts);
        assert_eq!((taken.aside, taken.confirmed, taken.corrected), (4, 0, 0));
        // Every leaf, the wrong one included, is recounted at the next
        // chance, and its answer is taken.
        let later = sent + Duration::from_secs(2);
        let spans = ranks.to_recount(later, COUNTS_PER_QUERY);
        assert_eq!(spans.len(), 5, "no leaf is left marked as being counted");
        ranks.counting(&spans, later);
        let counts: Vec<(Place, u64)> = spans
            .iter()
            .map(|(p, _)| (*p, if p.1 < 2 { 32 } else { 64 }))
            .collect();
        let taken = ranks.take(ranks.generation, later, &counts);
        assert_eq!(taken.wrong, vec![(70, 64)]);
        assert_eq!(ranks.total(), 256);
    }

    #[test]
    fn a_recount_answer_confirms_corrects_or_is_set_aside() {
        let (mut ranks, _) = board(Walk::Up, 128, 64);
        ranks.doubt_all();
        let sent = Instant::now();
        let spans = ranks.to_recount(sent, COUNTS_PER_QUERY);
        ranks.counting(&spans, sent);
        // A change reaches the second leaf after the count was sent.
        ranks.chunks[0].leaves[1].touched = Some(sent + Duration::from_millis(5));
        let taken = ranks.take(ranks.generation, sent, &[((0, 0), 64), ((0, 1), 65)]);
        assert_eq!((taken.confirmed, taken.aside), (1, 1));
        assert_eq!(ranks.doubtful(), 1);
        // A count far off is taken even when raced.
        let spans = ranks.to_recount(sent + Duration::from_secs(2), COUNTS_PER_QUERY);
        ranks.counting(&spans, sent);
        let taken = ranks.take(ranks.generation, sent, &[((0, 1), 20)]);
        assert_eq!(taken.corrected, 1);
        assert_eq!(ranks.chunks[0].leaves[1].count, 20);
        assert!(ranks.chunks[0].leaves[1].doubt, "still in doubt");
    }

    #[test]
    fn an_unknown_board_is_one_leaf_to_cut() {
        let ranks = BoardRanks::unknown(Walk::Up);
        assert_eq!(ranks.oversized(), Some((0, 0)));
    }
}
