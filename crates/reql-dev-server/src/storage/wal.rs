//! The write-ahead log that makes `--directory` durable.
//!
//! Every change is appended as a checksummed record. One writer thread takes all
//! records that are waiting, writes them, and syncs the file once for the whole
//! group, so concurrent writers share an fsync (group commit). A write with hard
//! durability is acknowledged only once the sync that covers it has finished.
//!
//! When the log grows past a limit the writer switches to a new file and a
//! snapshot of the whole store is written beside it; older files are removed once
//! the snapshot is safely on disk. Records are idempotent (full documents and
//! "ensure" catalog operations), so a record that is both in the snapshot and in
//! the newer log replays harmlessly.

use std::fs::{self, File, OpenOptions};
use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Weak};

use parking_lot::Mutex;

use crate::datum::{write_json_string, Datum};
use crate::error::ServerError;

/// A log record, already encoded as a frame.
struct Pending {
    seq: u64,
    frame: Vec<u8>,
    sync: bool,
}

/// What a snapshot writer needs from the store: a way to list every record that
/// recreates the current state.
pub trait SnapshotSource: Send + Sync {
    fn dump(&self, sink: &mut dyn FnMut(&str));
}

pub struct Log {
    sender: Mutex<(u64, Option<mpsc::Sender<Pending>>)>,
    durable: tokio::sync::watch::Receiver<u64>,
    failed: Arc<AtomicBool>,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
}

/// Log size after which a snapshot replaces the older log files, by default.
pub const DEFAULT_COMPACT_BYTES: u64 = 64 * 1024 * 1024;

fn wal_name(n: u64) -> String {
    format!("wal-{n:08}.log")
}
fn snapshot_name(n: u64) -> String {
    format!("snapshot-{n:08}.log")
}

fn parse_numbered(name: &str, prefix: &str) -> Option<u64> {
    name.strip_prefix(prefix)?
        .strip_suffix(".log")?
        .parse()
        .ok()
}

pub fn encode_frame(payload: &str) -> Vec<u8> {
    let bytes = payload.as_bytes();
    let mut frame = Vec::with_capacity(bytes.len() + 8);
    frame.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
    frame.extend_from_slice(&crc32fast::hash(bytes).to_le_bytes());
    frame.extend_from_slice(bytes);
    frame
}

/// Reads the records of one file; stops quietly at a torn or corrupt tail, which
/// is what a crash in the middle of an unacknowledged write leaves behind.
fn read_records(path: &Path, apply: &mut dyn FnMut(&[u8])) -> std::io::Result<()> {
    let mut data = Vec::new();
    File::open(path)?.read_to_end(&mut data)?;
    let mut pos = 0usize;
    while pos + 8 <= data.len() {
        let len =
            u32::from_le_bytes([data[pos], data[pos + 1], data[pos + 2], data[pos + 3]]) as usize;
        let crc = u32::from_le_bytes([data[pos + 4], data[pos + 5], data[pos + 6], data[pos + 7]]);
        let start = pos + 8;
        let Some(end) = start.checked_add(len).filter(|e| *e <= data.len()) else {
            log::warn!(
                "{}: incomplete record at byte {pos}; ignoring the tail",
                path.display()
            );
            return Ok(());
        };
        let payload = &data[start..end];
        if crc32fast::hash(payload) != crc {
            log::warn!(
                "{}: bad checksum at byte {pos}; ignoring the tail",
                path.display()
            );
            return Ok(());
        }
        apply(payload);
        pos = end;
    }
    Ok(())
}

fn sync_dir(dir: &Path) {
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
}

struct Files {
    snapshot: Option<u64>,
    wals: Vec<u64>,
}

fn list_files(dir: &Path) -> std::io::Result<Files> {
    let mut snapshots = Vec::new();
    let mut wals = Vec::new();
    for entry in fs::read_dir(dir)? {
        let name = entry?.file_name();
        let Some(name) = name.to_str() else { continue };
        if let Some(n) = parse_numbered(name, "snapshot-") {
            snapshots.push(n);
        } else if let Some(n) = parse_numbered(name, "wal-") {
            wals.push(n);
        }
    }
    snapshots.sort_unstable();
    wals.sort_unstable();
    Ok(Files {
        snapshot: snapshots.last().copied(),
        wals,
    })
}

/// What a replay found.
pub struct Replayed {
    /// Whether the directory held any data.
    pub had_data: bool,
    /// The number the next log file gets.
    pub next: u64,
    /// Size and count of the log files replayed after the snapshot.
    pub log_bytes: u64,
    pub log_files: usize,
}

/// Replays the directory's snapshot and logs through `apply`.
pub fn replay(dir: &Path, apply: &mut dyn FnMut(&[u8])) -> Result<Replayed, ServerError> {
    let dir_err = |source| ServerError::Directory {
        path: dir.display().to_string(),
        source,
    };
    fs::create_dir_all(dir).map_err(dir_err)?;
    let files = list_files(dir).map_err(dir_err)?;
    let first_wal = files.snapshot.unwrap_or(0);
    let mut any = false;
    if let Some(n) = files.snapshot {
        read_records(&dir.join(snapshot_name(n)), apply).map_err(dir_err)?;
        any = true;
    }
    let mut next = first_wal;
    let (mut log_bytes, mut log_files) = (0u64, 0usize);
    for &n in &files.wals {
        if n < first_wal {
            // Covered by the snapshot; left over from a compaction that stopped early.
            let _ = fs::remove_file(dir.join(wal_name(n)));
            continue;
        }
        let path = dir.join(wal_name(n));
        log_bytes += fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        log_files += 1;
        read_records(&path, apply).map_err(dir_err)?;
        any = true;
        next = next.max(n);
    }
    Ok(Replayed {
        had_data: any,
        next: next + 1,
        log_bytes,
        log_files,
    })
}

impl Log {
    /// Opens a new log file numbered `number` in `dir` and starts the writer thread.
    pub fn start(
        dir: &Path,
        number: u64,
        source: Weak<dyn SnapshotSource>,
        compact_bytes: u64,
    ) -> Result<Arc<Log>, ServerError> {
        let dir_err = |source| ServerError::Directory {
            path: dir.display().to_string(),
            source,
        };
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join(wal_name(number)))
            .map_err(dir_err)?;
        sync_dir(dir);
        let (tx, rx) = mpsc::channel::<Pending>();
        let (durable_tx, durable_rx) = tokio::sync::watch::channel(0u64);
        let failed = Arc::new(AtomicBool::new(false));
        let mut writer = Writer {
            dir: dir.to_path_buf(),
            number,
            file: BufWriter::with_capacity(1 << 20, file),
            size: 0,
            compact_bytes,
            compacting: Arc::new(AtomicBool::new(false)),
            compaction: None,
            source,
            failed: failed.clone(),
        };
        let thread = std::thread::Builder::new()
            .name("reql-wal".into())
            .spawn(move || writer.run(rx, durable_tx))
            .map_err(ServerError::Io)?;
        Ok(Arc::new(Log {
            sender: Mutex::new((0, Some(tx))),
            durable: durable_rx,
            failed,
            thread: Mutex::new(Some(thread)),
        }))
    }

    /// Queues a record and returns its sequence number. Callers hold the lock that
    /// orders the change, so the log order matches the order changes were made.
    pub fn append(&self, payload: &str, sync: bool) -> u64 {
        let frame = encode_frame(payload);
        let mut guard = self.sender.lock();
        guard.0 += 1;
        let seq = guard.0;
        if let Some(tx) = &guard.1 {
            if tx.send(Pending { seq, frame, sync }).is_err() {
                self.failed.store(true, Ordering::SeqCst);
            }
        }
        seq
    }

    /// Waits until every record up to `seq` is on disk.
    pub async fn wait_durable(&self, seq: u64) -> Result<(), String> {
        let mut rx = self.durable.clone();
        let res = rx.wait_for(|d| *d >= seq).await;
        if self.failed.load(Ordering::SeqCst) {
            return Err("The write-ahead log failed; the write may not be durable.".into());
        }
        res.map(|_| ())
            .map_err(|_| "The write-ahead log stopped.".to_string())
    }

    /// Flushes what is queued and stops the writer thread.
    pub fn close(&self) {
        self.sender.lock().1 = None;
        if let Some(t) = self.thread.lock().take() {
            let _ = t.join();
        }
    }
}

struct Writer {
    dir: PathBuf,
    number: u64,
    file: BufWriter<File>,
    size: u64,
    compact_bytes: u64,
    compacting: Arc<AtomicBool>,
    /// The snapshot thread last started: joined when the log closes, so
    /// that a stopped server leaves no thread removing files behind it.
    compaction: Option<std::thread::JoinHandle<()>>,
    source: Weak<dyn SnapshotSource>,
    failed: Arc<AtomicBool>,
}

impl Writer {
    fn run(&mut self, rx: mpsc::Receiver<Pending>, durable: tokio::sync::watch::Sender<u64>) {
        while let Ok(first) = rx.recv() {
            let mut last = first.seq;
            let mut sync = first.sync;
            let mut ok = self.write(&first.frame);
            // Group commit: everything that queued up while the last sync ran goes
            // into this one.
            while let Ok(p) = rx.try_recv() {
                last = p.seq;
                sync |= p.sync;
                ok &= self.write(&p.frame);
                if self.size > (1 << 30) {
                    break;
                }
            }
            ok &= self.file.flush().is_ok();
            if sync {
                ok &= self.file.get_ref().sync_data().is_ok();
            }
            if !ok {
                log::error!("writing the log in {} failed", self.dir.display());
                self.failed.store(true, Ordering::SeqCst);
            }
            durable.send_replace(last);
            self.maybe_compact();
        }
        let _ = self.file.flush();
        let _ = self.file.get_ref().sync_data();
        if let Some(compaction) = self.compaction.take() {
            let _ = compaction.join();
        }
    }

    fn write(&mut self, frame: &[u8]) -> bool {
        self.size += frame.len() as u64;
        self.file.write_all(frame).is_ok()
    }

    fn maybe_compact(&mut self) {
        if self.size < self.compact_bytes || self.compacting.load(Ordering::SeqCst) {
            return;
        }
        let Some(source) = self.source.upgrade() else {
            return;
        };
        let next = self.number + 1;
        let file = match OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join(wal_name(next)))
        {
            Ok(f) => f,
            Err(e) => {
                log::warn!("cannot start a new log file: {e}");
                return;
            }
        };
        let _ = self.file.flush();
        let _ = self.file.get_ref().sync_data();
        sync_dir(&self.dir);
        self.file = BufWriter::with_capacity(1 << 20, file);
        self.number = next;
        self.size = 0;
        self.compacting.store(true, Ordering::SeqCst);
        let flag = self.compacting.clone();
        let dir = self.dir.clone();
        let spawned = std::thread::Builder::new()
            .name("reql-snapshot".into())
            .spawn(move || {
                if let Err(e) = write_snapshot(&dir, next, source.as_ref()) {
                    log::warn!("snapshot failed: {e}");
                }
                flag.store(false, Ordering::SeqCst);
            });
        match spawned {
            Ok(handle) => self.compaction = Some(handle),
            Err(_) => self.compacting.store(false, Ordering::SeqCst),
        }
    }
}

/// Writes a snapshot that covers every log file numbered below `number`, then
/// removes those files.
pub fn write_snapshot(dir: &Path, number: u64, source: &dyn SnapshotSource) -> std::io::Result<()> {
    let tmp = dir.join(format!("{}.tmp", snapshot_name(number)));
    let mut out = BufWriter::with_capacity(1 << 20, File::create(&tmp)?);
    let mut err = None;
    source.dump(&mut |payload| {
        if err.is_none() {
            if let Err(e) = out.write_all(&encode_frame(payload)) {
                err = Some(e);
            }
        }
    });
    if let Some(e) = err {
        return Err(e);
    }
    out.flush()?;
    out.get_ref().sync_all()?;
    drop(out);
    fs::rename(&tmp, dir.join(snapshot_name(number)))?;
    sync_dir(dir);
    let files = list_files(dir)?;
    for n in files.wals.into_iter().filter(|n| *n < number) {
        fs::remove_file(dir.join(wal_name(n)))?;
    }
    for entry in fs::read_dir(dir)? {
        let name = entry?.file_name();
        if let Some(n) = name.to_str().and_then(|s| parse_numbered(s, "snapshot-")) {
            if n < number {
                fs::remove_file(dir.join(snapshot_name(n)))?;
            }
        }
    }
    sync_dir(dir);
    Ok(())
}

// ------------------------------------------------------------------ record payloads

pub fn put_record(table: &str, key: &Datum, doc: Option<&Datum>) -> String {
    let mut s = String::with_capacity(128);
    s.push_str("{\"op\":\"put\",\"table\":");
    write_json_string(table, &mut s);
    s.push_str(",\"key\":");
    if key.write_json(&mut s).is_err() {
        s.push_str("null");
    }
    s.push_str(",\"doc\":");
    match doc {
        Some(d) => {
            if d.write_json(&mut s).is_err() {
                s.push_str("null");
            }
        }
        None => s.push_str("null"),
    }
    s.push('}');
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn torn_tail_is_ignored() {
        let dir = std::env::temp_dir().join(format!("reql-log-test-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        let mut bytes = encode_frame("{\"op\":\"a\"}");
        bytes.extend(encode_frame("{\"op\":\"b\"}"));
        let full = bytes.len();
        bytes.extend(&encode_frame("{\"op\":\"c\"}")[..5]);
        fs::write(dir.join(wal_name(1)), &bytes).unwrap();
        let mut seen = Vec::new();
        let r = replay(&dir, &mut |p| {
            let v: serde_json::Value = serde_json::from_slice(p).unwrap();
            seen.push(v["op"].as_str().unwrap().to_string())
        })
        .unwrap();
        assert!(r.had_data);
        assert_eq!(r.next, 2);
        assert_eq!(seen, ["a", "b"]);
        assert!(full > 0);
        let _ = fs::remove_dir_all(&dir);
    }
}
