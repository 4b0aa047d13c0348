//! The state store's journal: with a data folder, every change of the key space is on
//! disk before the answer that reports it goes out, so a crash loses no acknowledged SET
//! or DEL.
//!
//! One file, `<data-dir>/statestore/journal`: a 16-byte header (magic `EPSSJRNL`, format
//! version) and frames `[len u32][crc32 u32][record]`. A record is a [`Change`]: a whole
//! entry (key, value, version, fencing token, expiry as Unix milliseconds) or a removal.
//! The store task batches: every request and call that is ready is executed, the batch's
//! changes are appended with one write and one `fdatasync` (group commit), and only then
//! are the answers sent.
//!
//! Opening replays the file (last record of a key wins). A torn frame at the end (a write
//! cut short by a crash) is cut off with a log line naming the offset; a damaged frame
//! followed by valid ones is corruption, and opening fails with the file and offset rather
//! than silently dropping acknowledged writes. When the file grows past four times the live data (and
//! 16 MiB), it is rewritten as a snapshot under a temporary name, synced and renamed.
//!
//! This is a journal of its own rather than records in the broker's message log: the state
//! store's writes are independent of message routing, and its own file keeps the broker's
//! log format and compaction free of it.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use bytes::Bytes;

use crate::hlc::Hlc;
use crate::store::Change;

const MAGIC: &[u8; 8] = b"EPSSJRNL";
const FORMAT: u32 = 1;
const HEADER: u64 = 16;
const TAG_PUT: u8 = 1;
const TAG_REMOVE: u8 = 2;
/// Smallest journal worth compacting.
const COMPACT_MIN: u64 = 16 << 20;

#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    #[error("state store journal {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error(
        "state store journal {path} is not a journal of this version (header {found:?}); \
         move it away to start empty"
    )]
    Format { path: PathBuf, found: Vec<u8> },
    #[error(
        "state store journal {path} is damaged at byte {offset} and holds valid records after \
         it, so cutting it there would lose acknowledged writes; keep a copy, then truncate it \
         to {offset} bytes (`truncate -s {offset} {path}`) to start with what precedes"
    )]
    Corrupt { path: PathBuf, offset: usize },
}

/// The open journal.
pub struct Journal {
    path: PathBuf,
    file: File,
    /// Bytes in the file.
    len: u64,
}

impl Journal {
    /// Open (or create) the journal in `dir`, returning it and the entries it holds.
    pub fn open(dir: &Path) -> Result<(Journal, Vec<Change>), JournalError> {
        let folder = dir.join("statestore");
        let path = folder.join("journal");
        let io = |source| JournalError::Io {
            path: path.clone(),
            source,
        };
        std::fs::create_dir_all(&folder).map_err(io)?;
        let mut file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(&path)
            .map_err(io)?;
        let mut data = Vec::new();
        file.read_to_end(&mut data).map_err(io)?;
        if data.is_empty() {
            file.write_all(&header()).map_err(io)?;
            file.sync_all().map_err(io)?;
            sync_dir(&folder).map_err(io)?;
            return Ok((
                Journal {
                    path,
                    file,
                    len: HEADER,
                },
                Vec::new(),
            ));
        }
        if data.len() < HEADER as usize || data[..16] != header() {
            return Err(JournalError::Format {
                path,
                found: data[..data.len().min(16)].to_vec(),
            });
        }
        let (entries, good) = replay(&data);
        if good < data.len() && (good + 1..data.len()).any(|at| next_frame(&data, at).is_some()) {
            return Err(JournalError::Corrupt { path, offset: good });
        }
        if good < data.len() {
            tracing::warn!(
                path = %path.display(),
                offset = good,
                dropped = data.len() - good,
                "state store journal has a torn or corrupt tail; cut there"
            );
            file.set_len(good as u64).map_err(io)?;
            file.sync_all().map_err(io)?;
        }
        file.seek(SeekFrom::End(0)).map_err(io)?;
        let journal = Journal {
            path,
            file,
            len: good as u64,
        };
        Ok((journal, entries.into_values().collect()))
    }

    /// Append a batch of changes durably (one write, one `fdatasync`).
    pub fn append(&mut self, changes: &[Change]) -> Result<(), JournalError> {
        if changes.is_empty() {
            return Ok(());
        }
        let mut out = Vec::new();
        for c in changes {
            frame(c, &mut out);
        }
        let io = |source| JournalError::Io {
            path: self.path.clone(),
            source,
        };
        if let Err(e) = self
            .file
            .write_all(&out)
            .and_then(|()| self.file.sync_data())
        {
            // A partial write would be a torn frame in the middle: cut it off so the next
            // attempt starts clean.
            let _ = self.file.set_len(self.len);
            return Err(io(e));
        }
        self.len += out.len() as u64;
        Ok(())
    }

    /// Whether the journal is worth rewriting, given the live data's size in bytes.
    pub fn wants_compaction(&self, live_bytes: usize) -> bool {
        self.len > COMPACT_MIN && self.len > 4 * live_bytes as u64
    }

    /// Replace the journal with a snapshot of `entries`.
    pub fn compact(&mut self, entries: &[Change]) -> Result<(), JournalError> {
        let folder = self
            .path
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_default();
        let tmp = folder.join("journal.tmp");
        let io = |source| JournalError::Io {
            path: tmp.clone(),
            source,
        };
        let mut out = header().to_vec();
        for c in entries {
            frame(c, &mut out);
        }
        let mut file = File::create(&tmp).map_err(io)?;
        file.write_all(&out).map_err(io)?;
        file.sync_all().map_err(io)?;
        std::fs::rename(&tmp, &self.path).map_err(io)?;
        sync_dir(&folder).map_err(io)?;
        self.file = OpenOptions::new()
            .append(true)
            .open(&self.path)
            .map_err(io)?;
        self.len = out.len() as u64;
        Ok(())
    }
}

fn header() -> [u8; 16] {
    let mut h = [0u8; 16];
    h[..8].copy_from_slice(MAGIC);
    h[8..12].copy_from_slice(&FORMAT.to_le_bytes());
    h
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

fn frame(c: &Change, out: &mut Vec<u8>) {
    let mut rec = Vec::new();
    match c {
        Change::Put {
            key,
            value,
            version,
            fencing,
            expires_at_ms,
        } => {
            rec.push(TAG_PUT);
            put_bytes(&mut rec, key);
            put_bytes(&mut rec, value);
            put_bytes(&mut rec, version.to_string().as_bytes());
            match fencing {
                Some(f) => {
                    rec.push(1);
                    put_bytes(&mut rec, f.to_string().as_bytes());
                }
                None => rec.push(0),
            }
            match expires_at_ms {
                Some(ms) => {
                    rec.push(1);
                    rec.extend_from_slice(&ms.to_le_bytes());
                }
                None => rec.push(0),
            }
        }
        Change::Remove { key } => {
            rec.push(TAG_REMOVE);
            put_bytes(&mut rec, key);
        }
    }
    out.extend_from_slice(&(rec.len() as u32).to_le_bytes());
    out.extend_from_slice(&crc32fast::hash(&rec).to_le_bytes());
    out.extend_from_slice(&rec);
}

fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    out.extend_from_slice(&(b.len() as u32).to_le_bytes());
    out.extend_from_slice(b);
}

/// Every key's last entry, and the length of the valid prefix.
fn replay(data: &[u8]) -> (std::collections::BTreeMap<Bytes, Change>, usize) {
    let mut entries = std::collections::BTreeMap::new();
    let mut at = HEADER as usize;
    while let Some((rec, next)) = next_frame(data, at) {
        match decode(rec) {
            Some(Change::Remove { key }) => {
                entries.remove(&key);
            }
            Some(put @ Change::Put { .. }) => {
                if let Change::Put { key, .. } = &put {
                    entries.insert(key.clone(), put.clone());
                }
            }
            None => break,
        }
        at = next;
    }
    (entries, at)
}

fn next_frame(data: &[u8], at: usize) -> Option<(&[u8], usize)> {
    let head = data.get(at..at + 8)?;
    let len = u32::from_le_bytes(head[..4].try_into().ok()?) as usize;
    let crc = u32::from_le_bytes(head[4..8].try_into().ok()?);
    let rec = data.get(at + 8..at + 8 + len)?;
    (crc32fast::hash(rec) == crc).then_some((rec, at + 8 + len))
}

fn decode(rec: &[u8]) -> Option<Change> {
    let mut r = rec;
    let tag = take(&mut r, 1)?[0];
    let key = Bytes::copy_from_slice(take_bytes(&mut r)?);
    match tag {
        TAG_PUT => {
            let value = Bytes::copy_from_slice(take_bytes(&mut r)?);
            let version: Hlc = std::str::from_utf8(take_bytes(&mut r)?)
                .ok()?
                .parse()
                .ok()?;
            let fencing = match take(&mut r, 1)?[0] {
                0 => None,
                _ => Some(
                    std::str::from_utf8(take_bytes(&mut r)?)
                        .ok()?
                        .parse()
                        .ok()?,
                ),
            };
            let expires_at_ms = match take(&mut r, 1)?[0] {
                0 => None,
                _ => Some(u64::from_le_bytes(take(&mut r, 8)?.try_into().ok()?)),
            };
            Some(Change::Put {
                key,
                value,
                version,
                fencing,
                expires_at_ms,
            })
        }
        TAG_REMOVE => Some(Change::Remove { key }),
        _ => None,
    }
}

fn take<'a>(r: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
    if r.len() < n {
        return None;
    }
    let (head, rest) = r.split_at(n);
    *r = rest;
    Some(head)
}

fn take_bytes<'a>(r: &mut &'a [u8]) -> Option<&'a [u8]> {
    let len = u32::from_le_bytes(take(r, 4)?.try_into().ok()?) as usize;
    take(r, len)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(key: &str, value: &str, expiry: Option<u64>) -> Change {
        Change::Put {
            key: Bytes::copy_from_slice(key.as_bytes()),
            value: Bytes::copy_from_slice(value.as_bytes()),
            version: "000001700000000:00001:n".parse().expect("hlc"),
            fencing: Some("000001700000000:00000:n".parse().expect("hlc")),
            expires_at_ms: expiry,
        }
    }

    fn temp(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("ep-journal-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    #[test]
    fn replays_last_write_per_key_and_removals() -> Result<(), JournalError> {
        let dir = temp("replay");
        let (mut j, none) = Journal::open(&dir)?;
        assert!(none.is_empty());
        j.append(&[put("a", "1", None), put("b", "2", Some(99))])?;
        j.append(&[
            put("a", "3", None),
            Change::Remove {
                key: Bytes::from_static(b"b"),
            },
        ])?;
        drop(j);
        let (_, entries) = Journal::open(&dir)?;
        assert_eq!(entries, vec![put("a", "3", None)]);
        let _ = std::fs::remove_dir_all(&dir);
        Ok(())
    }

    #[test]
    fn a_torn_tail_is_cut_and_later_writes_survive() -> Result<(), JournalError> {
        let dir = temp("torn");
        let (mut j, _) = Journal::open(&dir)?;
        j.append(&[put("a", "1", None), put("b", "2", None)])?;
        drop(j);
        let path = dir.join("statestore/journal");
        let len = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        let f = OpenOptions::new()
            .write(true)
            .open(&path)
            .map_err(|source| JournalError::Io {
                path: path.clone(),
                source,
            })?;
        f.set_len(len - 3).map_err(|source| JournalError::Io {
            path: path.clone(),
            source,
        })?;
        drop(f);
        let (mut j, entries) = Journal::open(&dir)?;
        assert_eq!(entries, vec![put("a", "1", None)]);
        j.append(&[put("c", "3", None)])?;
        drop(j);
        let (_, entries) = Journal::open(&dir)?;
        assert_eq!(entries, vec![put("a", "1", None), put("c", "3", None)]);
        let _ = std::fs::remove_dir_all(&dir);
        Ok(())
    }

    #[test]
    fn compaction_keeps_the_live_entries() -> Result<(), JournalError> {
        let dir = temp("compact");
        let (mut j, _) = Journal::open(&dir)?;
        for i in 0..100 {
            j.append(&[put("k", &i.to_string(), None)])?;
        }
        j.compact(&[put("k", "99", None)])?;
        j.append(&[put("z", "1", None)])?;
        drop(j);
        let (_, entries) = Journal::open(&dir)?;
        assert_eq!(entries, vec![put("k", "99", None), put("z", "1", None)]);
        let _ = std::fs::remove_dir_all(&dir);
        Ok(())
    }

    #[test]
    fn damage_before_valid_records_is_refused() -> Result<(), JournalError> {
        let dir = temp("corrupt");
        let (mut j, _) = Journal::open(&dir)?;
        j.append(&[put("a", "1", None)])?;
        j.append(&[put("b", "2", None)])?;
        drop(j);
        let path = dir.join("statestore/journal");
        let mut data = std::fs::read(&path).map_err(|source| JournalError::Io {
            path: path.clone(),
            source,
        })?;
        data[HEADER as usize + 10] ^= 0xFF; // inside the first record
        std::fs::write(&path, &data).map_err(|source| JournalError::Io {
            path: path.clone(),
            source,
        })?;
        let err = Journal::open(&dir).err();
        assert!(
            matches!(err, Some(JournalError::Corrupt { offset: 16, .. })),
            "{err:?}"
        );
        let _ = std::fs::remove_dir_all(&dir);
        Ok(())
    }

    #[test]
    fn a_foreign_file_is_refused() {
        let dir = temp("foreign");
        let _ = std::fs::create_dir_all(dir.join("statestore"));
        let _ = std::fs::write(dir.join("statestore/journal"), b"something else entirely");
        assert!(matches!(
            Journal::open(&dir),
            Err(JournalError::Format { .. })
        ));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
