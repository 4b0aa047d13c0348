//! The disk-backed message buffer (`Broker.spec.diskBackedMessageBuffer`): once the bytes
//! queued for subscribers in memory pass the memory threshold, further messages queued for
//! a session with a backlog are written to spill files, and only a small handle
//! ([`RecordAt`], with the message's weight and QoS) stays in its
//! [`Queue`](super::queue::Queue). The queue reads the message back, in queue order, when
//! the subscriber drains it.
//!
//! Layout: one folder, `<data-dir>/spill`, or a private temporary folder (mode 0700,
//! removed when the broker stops) without a data folder. It is emptied at start-up: the
//! durable store, not this buffer, is what recovery reads (a persisted session's queued
//! messages are in the store's log whether or not they spilled), so a spill file never
//! outlives the broker that wrote it. Each router partition appends to its own segments,
//! `p<partition>-<number>.spill`, so no partition waits for another: an 8-byte magic, then
//! frames `[length u32][crc32 u32][body]` (big-endian). The body is the delivery (QoS,
//! flags, packet id, session sequence, ready LSN, subscription ids) followed by the message
//! as the store encodes it ([`Record::Message`], carrying its store id). A segment is
//! deleted once every record in it has been read back or dropped; the one being written
//! rolls at [`SEGMENT_BYTES`].
//!
//! Bounds: `maxSize` caps the bytes of all segments together, consumed records of a
//! segment not yet deleted included. A message that does not fit stays in memory, where
//! `maxQueuedBytes`, the subscriber queue limits and backpressure apply as without the
//! buffer.
//!
//! Failures never lose a message that was accepted: a write that fails (disk full, I/O
//! error) leaves the message in memory, seals the segment, pauses spilling for
//! [`RETRY_AFTER`], and logs at most one line per [`LOG_EVERY`] with the count since the
//! previous one. A record that cannot be read back (I/O error, torn, checksum mismatch: the
//! file was damaged under the broker) is lost for the running session and logged the same
//! way; a persisted session gets it again from the store after a restart.
//!
//! Reads and writes are synchronous `pread`/`pwrite` on the partition's task: records are
//! small and were written moments before they are read, so they come from the page cache.

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::{DirBuilderExt, FileExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use edgeplane_codec::QoS;
use parking_lot::Mutex;

use super::Delivery;
use crate::settings::Settings;
use crate::stats::Stats;
use crate::store::{Clock, Record};

/// First bytes of every spill segment.
pub const MAGIC: &[u8; 8] = b"EPSPILL1";
const HEADER_LEN: u64 = MAGIC.len() as u64;
/// Length and checksum before each record body.
const FRAME_LEN: usize = 8;
/// The segment being written rolls once it holds this many bytes.
pub const SEGMENT_BYTES: u64 = 16 << 20;
/// After a failed write, messages stay in memory for this long before spilling is retried.
pub const RETRY_AFTER: Duration = Duration::from_secs(5);
/// At most one log line per kind of failure per partition in this interval.
pub const LOG_EVERY: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum SpillError {
    #[error(
        "cannot prepare the spill folder {path}: {source}; make the data folder writable or \
         remove diskBackedMessageBuffer"
    )]
    Dir { path: PathBuf, source: io::Error },
    #[error("spill file {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("spill file {path} at offset {offset}: the record is cut short (torn write)")]
    Torn { path: PathBuf, offset: u64 },
    #[error("spill file {path} at offset {offset}: checksum mismatch (the file was damaged)")]
    Checksum { path: PathBuf, offset: u64 },
    #[error("spill file {path} at offset {offset}: {what}")]
    Malformed {
        path: PathBuf,
        offset: u64,
        what: String,
    },
    #[error("spill segment {0} of this partition is gone")]
    NoSegment(u32),
}

/// Where one spilled record is: its segment (of the queue's partition), offset and length
/// of the whole frame. Segments never reach 4 GiB: they roll at [`SEGMENT_BYTES`] and one
/// record is at most the largest packet (256 MiB).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordAt {
    segment: u32,
    offset: u32,
    len: u32,
}

/// The broker's disk buffer: the budget shared by every partition and one log each.
#[derive(Debug)]
pub struct DiskBuffer {
    dir: PathBuf,
    /// A private temporary folder, removed on drop.
    temporary: bool,
    max_size: u64,
    threshold: u64,
    partitions: usize,
    /// Bytes of all segments on disk (reserved before each write).
    used: AtomicU64,
    logs: Vec<Mutex<PartitionLog>>,
}

#[derive(Debug)]
struct Segment {
    file: File,
    path: PathBuf,
    /// Bytes of the file accounted in [`DiskBuffer::used`].
    len: u64,
    /// Records written and not yet read back or dropped.
    live: u32,
}

#[derive(Debug)]
struct PartitionLog {
    dir: PathBuf,
    partition: usize,
    segments: HashMap<u32, Segment>,
    /// The segment appended to; `None` until the next write creates one.
    active: Option<u32>,
    next: u32,
    paused_until: Option<Instant>,
    write_failures: Rate,
    read_failures: Rate,
    scratch: BytesMut,
}

/// Rate limit of one kind of log line.
#[derive(Debug, Default)]
struct Rate {
    last_line: Option<Instant>,
    silent: u64,
}

impl Rate {
    /// `Some(n)` when a line is due (`n` failures since the previous line left none).
    fn note(&mut self, now: Instant) -> Option<u64> {
        if self
            .last_line
            .is_some_and(|t| now.duration_since(t) < LOG_EVERY)
        {
            self.silent += 1;
            return None;
        }
        self.last_line = Some(now);
        Some(std::mem::take(&mut self.silent))
    }
}

impl DiskBuffer {
    /// The buffer `settings` ask for, with one log per partition (`partitions`), its folder
    /// emptied; `None` when there is none, or when the folder cannot be prepared (logged:
    /// the broker then keeps every queued message in memory, bounded by `maxQueuedBytes`).
    pub fn start(settings: &Settings, partitions: usize) -> Option<Arc<DiskBuffer>> {
        let config = settings.disk_buffer?;
        let threshold = config.threshold(settings.clients.max_queued_bytes);
        let (dir, temporary) = match &settings.data_dir {
            Some(dir) => (dir.join("spill"), false),
            None => (private_dir(), true),
        };
        match DiskBuffer::open(&dir, temporary, config.max_size, threshold, partitions) {
            Ok(b) => {
                tracing::info!(dir = %b.dir.display(), max_size = b.max_size, memory_threshold = b.threshold, "disk-backed message buffer ready");
                Some(Arc::new(b))
            }
            Err(e) => {
                tracing::error!(error = %e, "the disk-backed message buffer is off: queued messages stay in memory");
                None
            }
        }
    }

    /// Empty (or create) `dir` and use it for a buffer of `max_size` bytes spilling above
    /// `threshold` queued bytes in memory, with one log per partition.
    pub(super) fn open(
        dir: &Path,
        temporary: bool,
        max_size: u64,
        threshold: u64,
        partitions: usize,
    ) -> Result<DiskBuffer, SpillError> {
        let err = |source| SpillError::Dir {
            path: dir.to_path_buf(),
            source,
        };
        match fs::remove_dir_all(dir) {
            Ok(()) => {
                tracing::debug!(dir = %dir.display(), "spill files of a previous run removed")
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(err(e)),
        }
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(err)?;
        let partitions = partitions.max(1);
        let logs = (0..partitions)
            .map(|p| Mutex::new(PartitionLog::new(dir, p)))
            .collect();
        Ok(DiskBuffer {
            dir: dir.to_path_buf(),
            temporary,
            max_size,
            threshold,
            partitions,
            used: AtomicU64::new(0),
            logs,
        })
    }

    /// Queued bytes in memory (all partitions) are over the memory threshold.
    pub fn over_threshold(&self, stats: &Stats) -> bool {
        stats.queued_bytes_in(self.partitions) > self.threshold
    }

    fn partition(&self, partition: usize) -> &Mutex<PartitionLog> {
        &self.logs[partition % self.logs.len()]
    }

    /// Take `n` bytes of the `maxSize` budget; `false` if they do not fit.
    fn reserve(&self, n: u64, stats: &Stats) -> bool {
        let fits = self
            .used
            .fetch_update(Relaxed, Relaxed, |used| {
                used.checked_add(n).filter(|&total| total <= self.max_size)
            })
            .is_ok();
        if fits {
            Stats::add(&stats.spilled_bytes, n);
        }
        fits
    }

    fn unreserve(&self, n: u64, stats: &Stats) {
        self.used.fetch_sub(n, Relaxed);
        Stats::sub(&stats.spilled_bytes, n);
    }

    /// Write `d` to partition `partition`'s log. `None`: it stays in memory (the budget is
    /// spent, spilling is paused after a failure, or this write failed; logged).
    pub fn append(&self, partition: usize, d: &Delivery, stats: &Stats) -> Option<RecordAt> {
        let mut log = self.partition(partition).lock();
        let now = Instant::now();
        if log.paused_until.is_some_and(|t| now < t) {
            return None;
        }
        log.paused_until = None;
        let mut frame = std::mem::take(&mut log.scratch);
        frame.clear();
        encode_frame(d, &mut frame);
        let at = self.write_frame(&mut log, &frame, stats);
        log.scratch = frame;
        if at.is_some() {
            Stats::add(&stats.spilled_messages, 1);
        }
        at
    }

    fn write_frame(&self, log: &mut PartitionLog, frame: &[u8], stats: &Stats) -> Option<RecordAt> {
        let total = frame.len() as u64;
        let current = log
            .active
            .and_then(|id| log.segments.get(&id).map(|s| (id, s.len)));
        let roll = current.is_none_or(|(_, len)| len > HEADER_LEN && len + total > SEGMENT_BYTES);
        let need = total + if roll { HEADER_LEN } else { 0 };
        if !self.reserve(need, stats) {
            return None;
        }
        let id = match (roll, current) {
            (false, Some((id, _))) => id,
            _ => match log.create() {
                Ok(id) => id,
                Err(e) => {
                    self.unreserve(need, stats);
                    log.write_failed(&e, stats);
                    return None;
                }
            },
        };
        let seg = log.segments.get_mut(&id)?;
        let offset = seg.len;
        let written = seg.file.write_all_at(frame, offset);
        seg.len += total;
        if let Err(source) = written {
            // Part of the frame may be in the file: append no more to this segment.
            let path = seg.path.clone();
            let empty = seg.live == 0;
            log.active = None;
            if empty {
                self.delete(log, id, stats);
            }
            log.write_failed(&SpillError::Io { path, source }, stats);
            return None;
        }
        seg.live += 1;
        Some(RecordAt {
            segment: id,
            offset: offset as u32,
            len: total as u32,
        })
    }

    /// Read the record at `at` of partition `partition` back (it stays until
    /// [`DiskBuffer::release`]).
    pub fn read(&self, partition: usize, at: RecordAt) -> Result<Delivery, SpillError> {
        let log = self.partition(partition).lock();
        let seg = log
            .segments
            .get(&at.segment)
            .ok_or(SpillError::NoSegment(at.segment))?;
        let offset = u64::from(at.offset);
        let mut buf = vec![0u8; at.len as usize];
        if let Err(source) = seg.file.read_exact_at(&mut buf, offset) {
            let path = seg.path.clone();
            return Err(match source.kind() {
                io::ErrorKind::UnexpectedEof => SpillError::Torn { path, offset },
                _ => SpillError::Io { path, source },
            });
        }
        decode_frame(Bytes::from(buf)).map_err(|e| e.at(&seg.path, offset))
    }

    /// The record at `at` was read back or dropped; a segment left without live records is
    /// deleted.
    pub fn release(&self, partition: usize, at: RecordAt, stats: &Stats) {
        let mut log = self.partition(partition).lock();
        let Some(seg) = log.segments.get_mut(&at.segment) else {
            return;
        };
        seg.live = seg.live.saturating_sub(1);
        Stats::sub(&stats.spilled_messages, 1);
        if seg.live == 0 {
            if log.active == Some(at.segment) {
                log.active = None;
            }
            self.delete(&mut log, at.segment, stats);
        }
    }

    /// A record of partition `partition` could not be read back: count it and log (rate
    /// limited).
    pub fn read_failed(&self, partition: usize, e: &SpillError, stats: &Stats) {
        Stats::add(&stats.spill_failures, 1);
        let mut log = self.partition(partition).lock();
        if let Some(more) = log.read_failures.note(Instant::now()) {
            tracing::error!(partition, error = %e, more_since_last_line = more, "a spilled message could not be read back and is lost for its session (a persisted session gets it again from the store after a restart)");
        }
    }

    fn delete(&self, log: &mut PartitionLog, id: u32, stats: &Stats) {
        let Some(seg) = log.segments.remove(&id) else {
            return;
        };
        self.unreserve(seg.len, stats);
        if let Err(e) = fs::remove_file(&seg.path) {
            tracing::warn!(path = %seg.path.display(), error = %e, "cannot delete a consumed spill segment");
        }
    }
}

impl Drop for DiskBuffer {
    fn drop(&mut self) {
        if self.temporary {
            let _ = fs::remove_dir_all(&self.dir);
        }
    }
}

impl PartitionLog {
    fn new(dir: &Path, partition: usize) -> PartitionLog {
        PartitionLog {
            dir: dir.to_path_buf(),
            partition,
            segments: HashMap::new(),
            active: None,
            next: 0,
            paused_until: None,
            write_failures: Rate::default(),
            read_failures: Rate::default(),
            scratch: BytesMut::new(),
        }
    }

    /// Create the next segment and make it the active one.
    fn create(&mut self) -> Result<u32, SpillError> {
        let id = self.next;
        self.next = self.next.wrapping_add(1);
        let path = self.dir.join(format!("p{}-{id:010}.spill", self.partition));
        let io_err = |source| SpillError::Io {
            path: path.clone(),
            source,
        };
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(io_err)?;
        if let Err(e) = file.write_all_at(MAGIC, 0) {
            let _ = fs::remove_file(&path);
            return Err(io_err(e));
        }
        self.segments.insert(
            id,
            Segment {
                file,
                path,
                len: HEADER_LEN,
                live: 0,
            },
        );
        self.active = Some(id);
        Ok(id)
    }

    fn write_failed(&mut self, e: &SpillError, stats: &Stats) {
        Stats::add(&stats.spill_failures, 1);
        let now = Instant::now();
        self.paused_until = Some(now + RETRY_AFTER);
        if let Some(more) = self.write_failures.note(now) {
            tracing::error!(partition = self.partition, error = %e, more_since_last_line = more, retry_in_secs = RETRY_AFTER.as_secs(), "cannot spill queued messages to disk: they stay in memory, where maxQueuedBytes and backpressure apply");
        }
    }
}

/// A private folder for a broker without a data folder, unique to this process.
fn private_dir() -> PathBuf {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let n = NEXT.fetch_add(1, Relaxed);
    std::env::temp_dir().join(format!("edgeplane-spill-{}-{n}", std::process::id()))
}

/// Frame `d` into `out`: `[length][crc32][body]`.
fn encode_frame(d: &Delivery, out: &mut BytesMut) {
    out.put_u64(0);
    out.put_u8(d.qos as u8);
    out.put_u8(u8::from(d.retain) | (u8::from(d.dup) << 1));
    out.put_u16(d.packet_id);
    out.put_u64(d.seq);
    out.put_u64(d.ready);
    out.put_u32(d.sub_ids.len() as u32);
    for id in &d.sub_ids {
        out.put_u32(*id);
    }
    Record::Message {
        id: d.msg.store_id.get().copied().unwrap_or(0),
        msg: Arc::clone(&d.msg),
    }
    .encode(out);
    let body_len = (out.len() - FRAME_LEN) as u32;
    let crc = crc32fast::hash(&out[FRAME_LEN..]);
    out[..4].copy_from_slice(&body_len.to_be_bytes());
    out[4..8].copy_from_slice(&crc.to_be_bytes());
}

/// Why a frame does not decode; placed in its file by [`FrameError::at`].
#[derive(Debug, PartialEq, Eq)]
enum FrameError {
    Torn,
    Checksum,
    Malformed(String),
}

impl FrameError {
    fn at(self, path: &Path, offset: u64) -> SpillError {
        let path = path.to_path_buf();
        match self {
            FrameError::Torn => SpillError::Torn { path, offset },
            FrameError::Checksum => SpillError::Checksum { path, offset },
            FrameError::Malformed(what) => SpillError::Malformed { path, offset, what },
        }
    }
}

/// Check and decode one whole frame.
fn decode_frame(mut b: Bytes) -> Result<Delivery, FrameError> {
    if b.len() < FRAME_LEN {
        return Err(FrameError::Torn);
    }
    let len = b.get_u32() as usize;
    let crc = b.get_u32();
    if b.len() < len {
        return Err(FrameError::Torn);
    }
    b.truncate(len);
    if crc32fast::hash(&b) != crc {
        return Err(FrameError::Checksum);
    }
    let bad = |what: &str| FrameError::Malformed(what.to_owned());
    if b.len() < 24 {
        return Err(bad("delivery header cut short"));
    }
    let qos = QoS::try_from(b.get_u8()).map_err(|_| bad("invalid QoS"))?;
    let flags = b.get_u8();
    let packet_id = b.get_u16();
    let seq = b.get_u64();
    let ready = b.get_u64();
    let n = b.get_u32() as usize;
    if b.len() < n.saturating_mul(4) {
        return Err(bad("subscription identifiers cut short"));
    }
    let sub_ids = (0..n).map(|_| b.get_u32()).collect();
    let msg = match Record::decode(b, &Clock::now()) {
        Ok(Record::Message { id, msg }) => {
            if id != 0 {
                let _ = msg.store_id.set(id);
            }
            msg
        }
        Ok(_) => return Err(bad("not a message record")),
        Err(e) => return Err(FrameError::Malformed(e.to_string())),
    };
    Ok(Delivery {
        msg,
        qos,
        retain: flags & 1 != 0,
        packet_id,
        dup: flags & 2 != 0,
        sub_ids,
        seq,
        ready,
        gate: None,
    })
}

#[cfg(test)]
#[path = "spill_tests.rs"]
mod tests;
