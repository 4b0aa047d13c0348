//! The durable store: an append-only, checksummed log of state changes (sessions,
//! subscriptions, queued messages, QoS 2 state, retained messages), written by one thread
//! with group commit, and replayed at start.
//!
//! Partitions and connections [`Store::append`] records and get a log sequence number (LSN)
//! back at once; the writer thread takes everything appended since its last write, writes
//! it with one `write` and one `fdatasync`, and then publishes the highest LSN that is
//! durable ([`Store::durable`]) and calls the durability hook, so acknowledgements held for
//! those records go out. Durability is a prefix: once LSN n is durable, so is everything
//! appended before it, which is what lets a QoS 2 dedup record written by the publisher's
//! connection protect deliveries written later by other partitions.
//!
//! The writer keeps the [`model::State`] the log describes; when the log has grown to twice
//! what a snapshot of that state would take, it writes the snapshot as a new base segment
//! and deletes the old ones (compaction). Opening a store replays it, truncates a torn tail,
//! and compacts, which also rewrites segments of older formats in the current one.

mod log;
pub mod model;
pub mod policy;
pub mod record;

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::time::Duration;

use bytes::BytesMut;

pub use model::State;
pub use policy::Policy;
pub use record::{Clock, Queued, Record, SessionMeta};

use crate::message::Message;

/// Compaction never runs before the log holds this much, however small the state.
const COMPACT_MIN_BYTES: u64 = 64 * 1024 * 1024;

#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// Compact once the log exceeds this and twice the live state.
    pub compact_min_bytes: u64,
}

impl Default for StoreOptions {
    fn default() -> Self {
        Self {
            compact_min_bytes: COMPACT_MIN_BYTES,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot use the data folder {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error(
        "the data folder {0} is in use by another Edgeplane process; stop it, or give this one \
         its own --data-dir"
    )]
    Locked(PathBuf),
    #[error(
        "the store file {file} is damaged at byte {offset}: {why}; run `edgeplane store check \
         --data-dir {dir}` for details, or `edgeplane store repair --data-dir {dir}` to keep \
         what precedes the damage"
    )]
    Corrupt {
        file: PathBuf,
        dir: PathBuf,
        offset: u64,
        why: String,
    },
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> StoreError + '_ {
    move |source| StoreError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// What the writer thread takes from appenders.
struct Pending {
    records: Vec<Record>,
    next_lsn: u64,
    closed: bool,
}

struct Shared {
    pending: Mutex<Pending>,
    wake: Condvar,
    durable: AtomicU64,
    /// The same LSN for async waiters (connections holding acknowledgements).
    durable_tx: tokio::sync::watch::Sender<u64>,
    next_message_id: AtomicU64,
    hook: OnceLock<Box<dyn Fn(u64) + Send + Sync>>,
    /// The last write error while the store cannot write (disk full, I/O error).
    failing: Mutex<Option<String>>,
    /// Bytes of the log on disk (the current segment; a compaction briefly adds the new
    /// one beside it).
    size: AtomicU64,
    /// `persistence.maxSize`: above it new QoS 1/2 publishes are pushed back.
    max_size: Option<u64>,
}

/// Handle to an open store; shared by the router and connections.
pub struct Store {
    shared: Arc<Shared>,
    writer: Mutex<Option<std::thread::JoinHandle<()>>>,
    pub policy: Policy,
    dir: PathBuf,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("dir", &self.dir).finish()
    }
}

impl Store {
    /// Open (or create) the store in `dir`, replay it and start the writer. Returns the
    /// state to hand to the router.
    pub fn open(
        dir: &Path,
        policy: Policy,
        options: StoreOptions,
    ) -> Result<(Arc<Store>, State), StoreError> {
        fs::create_dir_all(dir).map_err(io_err(dir))?;
        let lock = lock_dir(dir)?;
        let recovered = recover(dir, Repair::No)?;
        let (file, number, segment_len) = rewrite(dir, &recovered)?;
        let max_size = policy.config.max_size;
        let mut options = options;
        if let Some(max) = max_size {
            // Compact early enough that a log of mostly finished records never reaches the
            // limit by itself.
            options.compact_min_bytes = options.compact_min_bytes.min(max / 2);
        }
        let state = recovered.state;
        let shared = Arc::new(Shared {
            pending: Mutex::new(Pending {
                records: Vec::new(),
                next_lsn: 0,
                closed: false,
            }),
            wake: Condvar::new(),
            durable: AtomicU64::new(0),
            durable_tx: tokio::sync::watch::channel(0).0,
            next_message_id: AtomicU64::new(state.max_message_id() + 1),
            hook: OnceLock::new(),
            failing: Mutex::new(None),
            size: AtomicU64::new(segment_len),
            max_size,
        });
        let mut writer = Writer {
            shared: Arc::clone(&shared),
            dir: dir.to_path_buf(),
            file,
            number,
            segment_len,
            state: rebuild(&state),
            options,
            _lock: lock,
        };
        let thread = std::thread::Builder::new()
            .name("edgeplane-store".into())
            .spawn(move || writer.run())
            .map_err(io_err(dir))?;
        let store = Store {
            shared,
            writer: Mutex::new(Some(thread)),
            policy,
            dir: dir.to_path_buf(),
        };
        Ok((Arc::new(store), state))
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Queue a record for the next group commit; returns its LSN.
    pub fn append(&self, rec: Record) -> u64 {
        let mut p = lock(&self.shared.pending);
        p.next_lsn += 1;
        p.records.push(rec);
        if p.records.len() == 1 {
            self.shared.wake.notify_one();
        }
        p.next_lsn
    }

    /// The highest LSN written and synced.
    pub fn durable(&self) -> u64 {
        self.shared.durable.load(Ordering::Acquire)
    }

    /// Follow the durable LSN from async code.
    pub fn watch_durable(&self) -> tokio::sync::watch::Receiver<u64> {
        self.shared.durable_tx.subscribe()
    }

    /// Called by the writer thread with the new durable LSN after every group commit.
    pub fn on_durable(&self, hook: Box<dyn Fn(u64) + Send + Sync>) {
        let _ = self.shared.hook.set(hook);
    }

    /// The store id of `msg`, writing its body first if no record refers to it yet.
    pub fn message_id(&self, msg: &Arc<Message>) -> u64 {
        *msg.store_id.get_or_init(|| {
            let id = self.shared.next_message_id.fetch_add(1, Ordering::Relaxed);
            self.append(Record::Message {
                id,
                msg: Arc::clone(msg),
            });
            id
        })
    }

    /// Why the store cannot write at the moment, if it cannot.
    pub fn failing(&self) -> Option<String> {
        lock(&self.shared.failing).clone()
    }

    /// Bytes of the log on disk now.
    pub fn size(&self) -> u64 {
        self.shared.size.load(Ordering::Relaxed)
    }

    /// The log is over `persistence.maxSize`: MQTT 5 QoS 1/2 publishes are refused with
    /// 0x97 and MQTT 3.1.1 publishers are no longer read until it is back under three
    /// quarters of it (compaction after deliveries brings it down).
    pub fn over_size(&self) -> bool {
        self.shared.max_size.is_some_and(|m| self.size() > m)
    }

    /// Back under three quarters of `persistence.maxSize` (or no limit).
    pub fn below_size_low_water(&self) -> bool {
        self.shared
            .max_size
            .is_none_or(|m| self.size() <= m - m / 4)
    }

    /// Write everything appended so far and stop the writer.
    pub fn close(&self) {
        lock(&self.shared.pending).closed = true;
        self.shared.wake.notify_one();
        if let Some(t) = lock(&self.writer).take() {
            let _ = t.join();
        }
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        self.close();
    }
}

/// Write the recovered state as a new base segment and delete the segments it replaces
/// (which also upgrades segments written in an older format).
fn rewrite(dir: &Path, recovered: &Recovered) -> Result<(File, u64, u64), StoreError> {
    let number = recovered.last_segment + 1;
    let mut contents = BytesMut::new();
    contents.extend_from_slice(&log::header(log::FLAG_BASE));
    write_snapshot(&recovered.state, &mut contents);
    let file = log::write_new(dir, number, &contents).map_err(io_err(dir))?;
    for &n in &recovered.segments {
        let path = log::segment_path(dir, n);
        fs::remove_file(&path).map_err(io_err(&path))?;
    }
    Ok((file, number, contents.len() as u64))
}

/// `edgeplane store check`: read the store without changing it.
pub fn check(dir: &Path) -> Result<Recovered, StoreError> {
    let _lock = lock_dir(dir)?;
    recover_inner(dir, Repair::No, false)
}

/// `edgeplane store repair`: keep what precedes any damage and rewrite the store.
pub fn repair(dir: &Path) -> Result<Recovered, StoreError> {
    let _lock = lock_dir(dir)?;
    let recovered = recover_inner(dir, Repair::Yes, true)?;
    rewrite(dir, &recovered)?;
    Ok(recovered)
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn lock_dir(dir: &Path) -> Result<File, StoreError> {
    let path = dir.join("LOCK");
    let f = File::create(&path).map_err(io_err(&path))?;
    match f.try_lock() {
        Ok(()) => Ok(f),
        Err(fs::TryLockError::WouldBlock) => Err(StoreError::Locked(dir.to_path_buf())),
        Err(fs::TryLockError::Error(e)) => Err(io_err(&path)(e)),
    }
}

/// The writer's own copy of the state: the same records applied again (messages are shared).
fn rebuild(state: &State) -> State {
    let mut copy = State::default();
    state.snapshot(|r| copy.apply(r.clone()));
    copy
}

fn write_snapshot(state: &State, out: &mut BytesMut) {
    let mut body = BytesMut::new();
    state.snapshot(|r| {
        body.clear();
        r.encode(&mut body);
        log::frame(&body, out);
    });
}

struct Writer {
    shared: Arc<Shared>,
    dir: PathBuf,
    file: File,
    number: u64,
    segment_len: u64,
    state: State,
    options: StoreOptions,
    _lock: File,
}

impl Writer {
    fn run(&mut self) {
        let mut buf = BytesMut::with_capacity(1 << 20);
        let mut body = BytesMut::new();
        loop {
            let (records, last) = {
                let mut p = lock(&self.shared.pending);
                while p.records.is_empty() && !p.closed {
                    p = self
                        .shared
                        .wake
                        .wait(p)
                        .unwrap_or_else(std::sync::PoisonError::into_inner);
                }
                if p.records.is_empty() {
                    return;
                }
                (std::mem::take(&mut p.records), p.next_lsn)
            };
            buf.clear();
            for rec in records {
                body.clear();
                rec.encode(&mut body);
                log::frame(&body, &mut buf);
                self.state.apply(rec);
            }
            self.state.sweep();
            self.write_durably(&buf);
            self.shared.durable.store(last, Ordering::Release);
            self.shared.durable_tx.send_replace(last);
            if let Some(hook) = self.shared.hook.get() {
                hook(last);
            }
            if self.segment_len
                > self
                    .options
                    .compact_min_bytes
                    .max(2 * self.state.live_bytes)
            {
                self.compact();
            }
        }
    }

    /// Write and sync `buf`, retrying (after cutting off any partial write) until it works:
    /// nothing later may become durable before it. While it fails, the store reports why.
    fn write_durably(&mut self, buf: &[u8]) {
        let mut delay = Duration::from_millis(100);
        loop {
            let r = self
                .file
                .write_all(buf)
                .and_then(|()| self.file.sync_data());
            match r {
                Ok(()) => {
                    self.segment_len += buf.len() as u64;
                    self.publish_size();
                    if lock(&self.shared.failing).take().is_some() {
                        tracing::info!(dir = %self.dir.display(), "store writes again");
                    }
                    return;
                }
                Err(e) => {
                    let why = format!("cannot write to {}: {e}", self.dir.display());
                    let mut failing = lock(&self.shared.failing);
                    if failing.as_deref() != Some(&why) {
                        tracing::error!(error = %why, "store write failed; acknowledgements wait until it works");
                    }
                    *failing = Some(why);
                    drop(failing);
                    let _ = self.file.set_len(self.segment_len);
                    let _ =
                        std::io::Seek::seek(&mut self.file, io::SeekFrom::Start(self.segment_len));
                    std::thread::sleep(delay);
                    delay = (delay * 2).min(Duration::from_secs(2));
                }
            }
        }
    }

    /// Publish the log's size, saying so when it crosses `persistence.maxSize`.
    fn publish_size(&self) {
        let before = self.shared.size.swap(self.segment_len, Ordering::Relaxed);
        if let Some(max) = self.shared.max_size {
            if before <= max && self.segment_len > max {
                tracing::warn!(
                    size = self.segment_len,
                    max_size = max,
                    "store is over persistence.maxSize: MQTT 5 QoS 1/2 publishes get 0x97 Quota exceeded and MQTT 3.1.1 publishers are paused until deliveries let it compact"
                );
            } else if before > max && self.segment_len <= max {
                tracing::info!(
                    size = self.segment_len,
                    max_size = max,
                    "store is under persistence.maxSize again"
                );
            }
        }
    }

    /// Write the state as a new base segment and delete the segments it replaces.
    fn compact(&mut self) {
        self.state.collect_garbage();
        let mut contents = BytesMut::new();
        contents.extend_from_slice(&log::header(log::FLAG_BASE));
        write_snapshot(&self.state, &mut contents);
        let number = self.number + 1;
        match log::write_new(&self.dir, number, &contents) {
            Ok(file) => {
                let old = log::segment_path(&self.dir, self.number);
                if let Err(e) = fs::remove_file(&old) {
                    tracing::warn!(file = %old.display(), error = %e, "cannot remove a compacted segment");
                }
                tracing::debug!(
                    from = self.segment_len,
                    to = contents.len(),
                    "store log compacted"
                );
                self.file = file;
                self.number = number;
                self.segment_len = contents.len() as u64;
                self.publish_size();
            }
            Err(e) => {
                tracing::warn!(dir = %self.dir.display(), error = %e, "store compaction failed; will retry");
            }
        }
    }
}

/// Whether recovery may cut damaged data off (`edgeplane store repair`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Repair {
    No,
    Yes,
}

/// What reading a store found.
pub struct Recovered {
    pub state: State,
    /// Segment numbers read (to delete once the state is rewritten).
    pub segments: Vec<u64>,
    pub last_segment: u64,
    pub records: u64,
    /// What was cut off, in words (torn tails; with repair, damage too).
    pub truncated: Vec<String>,
}

/// Replay the store in `dir`. A torn tail of the last segment is truncated; other damage is
/// an error unless `repair` says to cut it off (and drop the later segments).
pub fn recover(dir: &Path, repair: Repair) -> Result<Recovered, StoreError> {
    recover_inner(dir, repair, true)
}

fn recover_inner(dir: &Path, repair: Repair, modify: bool) -> Result<Recovered, StoreError> {
    let numbers = log::list_segments(dir).map_err(io_err(dir))?;
    let clock = Clock::now();
    let mut out = Recovered {
        state: State::default(),
        segments: numbers.clone(),
        last_segment: numbers.last().copied().unwrap_or(0),
        records: 0,
        truncated: Vec::new(),
    };
    let mut segments = Vec::new();
    for &n in &numbers {
        let path = log::segment_path(dir, n);
        segments.push((
            path.clone(),
            log::read_segment(&path).map_err(io_err(&path))?,
        ));
    }
    let base = segments
        .iter()
        .rposition(|(_, s)| s.header.flags & log::FLAG_BASE != 0 && s.header.version > 0)
        .unwrap_or(0);
    let count = segments.len();
    for (i, (path, seg)) in segments.into_iter().enumerate().skip(base) {
        let last = i + 1 == count;
        if let Some(damage) = &seg.damage {
            let (offset, why) = match damage {
                log::Damage::Header(why) => (0, why.clone()),
                log::Damage::Frame { offset, why, .. } => (*offset, why.clone()),
            };
            // A write cut short by a crash: the end of the last segment, nothing valid after.
            let torn = last
                && matches!(
                    damage,
                    log::Damage::Frame {
                        followed: false,
                        ..
                    }
                );
            if !torn && repair == Repair::No {
                return Err(StoreError::Corrupt {
                    file: path,
                    dir: dir.to_path_buf(),
                    offset,
                    why,
                });
            }
            let what = format!(
                "{}: cut {} bytes at byte {offset} ({why})",
                path.display(),
                seg.file_len - seg.valid_len
            );
            tracing::warn!(file = %path.display(), offset, %why, "store: truncating a damaged or torn tail");
            out.truncated.push(what);
            if modify && (repair == Repair::Yes || torn) {
                if seg.valid_len < log::HEADER_LEN {
                    fs::remove_file(&path).map_err(io_err(&path))?;
                } else {
                    log::truncate(&path, seg.valid_len).map_err(io_err(&path))?;
                }
            }
        }
        for frame in seg.frames {
            let rec = Record::decode(frame, &clock).map_err(|e| StoreError::Corrupt {
                file: path.clone(),
                dir: dir.to_path_buf(),
                offset: 0,
                why: e.0,
            })?;
            out.state.apply(rec);
            out.records += 1;
        }
        if seg.damage.is_some() {
            // Nothing after damage can be trusted to follow it.
            break;
        }
    }
    let rolled_back = out.state.roll_back_uncommitted();
    if rolled_back > 0 {
        tracing::info!(
            entries = rolled_back,
            "store: dropped queue entries of QoS 2 messages never acknowledged to their publisher"
        );
    }
    out.state.collect_garbage();
    Ok(out)
}
