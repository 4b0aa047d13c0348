//! Segment files of the durable log: naming, the header, framing and checksums, and reading
//! them back with torn-tail detection.
//!
//! A segment is `<number>.log` in the store folder: a 16-byte header (magic, format
//! version, flags) then frames `[length u32][crc32 u32][record]`. A segment flagged `BASE`
//! starts with a complete snapshot of the state; it is written under a temporary name and
//! renamed, so it exists only once whole. Recovery replays the newest base segment and every
//! segment after it. A frame that is cut short or fails its checksum at the end of the last
//! segment is a write that a crash interrupted: it was never acknowledged, and is truncated.
//! The same anywhere else is corruption, which stops the start with the file and offset.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use bytes::{BufMut, Bytes, BytesMut};

pub const MAGIC: &[u8; 8] = b"EPSTORE\0";
/// The on-disk format this build writes. Older formats are read and rewritten at start.
pub const FORMAT_VERSION: u32 = 1;
pub const FLAG_BASE: u32 = 1;
pub const HEADER_LEN: u64 = 16;
/// Largest frame accepted when reading: a length beyond it is corruption, not a record.
pub const MAX_FRAME: u32 = 512 * 1024 * 1024;

pub fn segment_path(dir: &Path, number: u64) -> PathBuf {
    dir.join(format!("{number:020}.log"))
}

/// Segment numbers present in `dir`, ascending. Stray temporary files are removed.
pub fn list_segments(dir: &Path) -> io::Result<Vec<u64>> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if name.ends_with(".tmp") {
            let _ = fs::remove_file(entry.path());
            continue;
        }
        if let Some(n) = name.strip_suffix(".log").and_then(|n| n.parse().ok()) {
            out.push(n);
        }
    }
    out.sort_unstable();
    Ok(out)
}

pub fn header(flags: u32) -> [u8; HEADER_LEN as usize] {
    let mut h = [0u8; HEADER_LEN as usize];
    h[..8].copy_from_slice(MAGIC);
    h[8..12].copy_from_slice(&FORMAT_VERSION.to_be_bytes());
    h[12..16].copy_from_slice(&flags.to_be_bytes());
    h
}

/// Append one framed record body to `out`.
pub fn frame(body: &[u8], out: &mut BytesMut) {
    out.put_u32(body.len() as u32);
    out.put_u32(crc32fast::hash(body));
    out.put_slice(body);
}

#[derive(Debug)]
pub struct SegmentHeader {
    pub version: u32,
    pub flags: u32,
}

/// Why a segment cannot be read further.
#[derive(Debug, Clone)]
pub enum Damage {
    /// The header is missing or wrong: not a segment of ours, or a newer format.
    Header(String),
    /// A frame at `offset` is cut short or fails its checksum; `followed` when a whole,
    /// checked frame comes after it (so it is corruption, not a write cut short).
    Frame {
        offset: u64,
        why: String,
        followed: bool,
    },
}

/// A segment read into memory: its header, the frames that checked out, and where (and why)
/// reading stopped early, if it did.
pub struct Segment {
    pub header: SegmentHeader,
    pub frames: Vec<Bytes>,
    /// Length of the valid prefix (header plus whole, checked frames).
    pub valid_len: u64,
    pub file_len: u64,
    pub damage: Option<Damage>,
}

pub fn read_segment(path: &Path) -> io::Result<Segment> {
    let mut data = Vec::new();
    File::open(path)?.read_to_end(&mut data)?;
    let file_len = data.len() as u64;
    let data = Bytes::from(data);
    let bad_header = |why: String| Segment {
        header: SegmentHeader {
            version: 0,
            flags: 0,
        },
        frames: Vec::new(),
        valid_len: 0,
        file_len,
        damage: Some(Damage::Header(why)),
    };
    if data.len() < HEADER_LEN as usize || &data[..8] != MAGIC {
        return Ok(bad_header("not an Edgeplane store segment".into()));
    }
    let word = |i: usize| u32::from_be_bytes([data[i], data[i + 1], data[i + 2], data[i + 3]]);
    let header = SegmentHeader {
        version: word(8),
        flags: word(12),
    };
    if header.version > FORMAT_VERSION || header.version == 0 {
        return Ok(bad_header(format!(
            "format version {} is not one this Edgeplane reads (it reads 1 to {FORMAT_VERSION}); \
             was it written by a newer release?",
            header.version
        )));
    }
    let mut frames = Vec::new();
    let mut at = HEADER_LEN as usize;
    let mut damage = None;
    while at < data.len() {
        let rest = data.len() - at;
        if rest < 8 {
            damage = Some(Damage::Frame {
                offset: at as u64,
                why: format!("frame header cut short ({rest} bytes)"),
                followed: false,
            });
            break;
        }
        let len = word(at);
        let crc = word(at + 4);
        if len > MAX_FRAME || (len as usize) > rest - 8 {
            damage = Some(Damage::Frame {
                offset: at as u64,
                why: format!("frame of {len} bytes runs past the end of the file"),
                followed: false,
            });
            break;
        }
        let body = data.slice(at + 8..at + 8 + len as usize);
        if crc32fast::hash(&body) != crc {
            damage = Some(Damage::Frame {
                offset: at as u64,
                why: "checksum mismatch".into(),
                followed: valid_frame_at(&data, at + 8 + len as usize),
            });
            break;
        }
        frames.push(body);
        at += 8 + len as usize;
    }
    Ok(Segment {
        header,
        frames,
        valid_len: at as u64,
        file_len,
        damage,
    })
}

/// Whether a whole frame with a matching checksum starts at `at`.
fn valid_frame_at(data: &[u8], at: usize) -> bool {
    let Some(head) = data.get(at..at + 8) else {
        return false;
    };
    let len = u32::from_be_bytes([head[0], head[1], head[2], head[3]]) as usize;
    let crc = u32::from_be_bytes([head[4], head[5], head[6], head[7]]);
    data.get(at + 8..at + 8 + len)
        .is_some_and(|body| crc32fast::hash(body) == crc)
}

/// Cut a segment back to its valid prefix and make that durable.
pub fn truncate(path: &Path, len: u64) -> io::Result<()> {
    let f = OpenOptions::new().write(true).open(path)?;
    f.set_len(len)?;
    f.sync_all()
}

/// Open a segment for appending at its end.
pub fn open_append(path: &Path) -> io::Result<File> {
    let mut f = OpenOptions::new().write(true).open(path)?;
    f.seek(SeekFrom::End(0))?;
    Ok(f)
}

/// Write a new segment whole: `contents` (header included) under a temporary name, synced,
/// then renamed into place and the folder synced, so the segment exists only complete.
pub fn write_new(dir: &Path, number: u64, contents: &[u8]) -> io::Result<File> {
    let path = segment_path(dir, number);
    let tmp = path.with_extension("tmp");
    {
        let mut f = File::create(&tmp)?;
        f.write_all(contents)?;
        f.sync_all()?;
    }
    fs::rename(&tmp, &path)?;
    sync_dir(dir)?;
    open_append(&path)
}

pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}
