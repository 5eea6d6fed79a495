//! The append log: what makes a small journal commit durable without a durable redb commit.
//!
//! A durable redb commit writes its header and five pages of its own (free lists, allocator
//! state, the table tree) besides the data: about 24 KiB, 2.7× a 15-event request, at every
//! commit. At a few requests a second that overhead was most of the disk writes (issue 21). So a
//! small journal commit is committed to redb *without* durability (redb keeps its pages in
//! memory) and its rows are appended here and `fdatasync`ed before the request is answered. redb
//! writes those pages once, at its next durable commit (a tick's, typically), or never, when the
//! rows were pruned before it. Large commits, where redb's overhead is small beside the data,
//! stay durable redb commits and skip this log (see [`DIRECT_BYTES`]). Small commits without
//! client ids go further and skip redb until another operation needs their rows (see
//! [`super::tail`]).
//!
//! **Format.** The file `<data file>.wal` holds records at 4 KiB boundaries, each padded to whole
//! pages (an `fdatasync` writes whole pages anyway, and a record never shares a page with the
//! next, so appending never rewrites an acknowledged one):
//!
//! | bytes | field |
//! |---|---|
//! | 4 | magic `AWL1` |
//! | 4 | CRC-32 of everything after it, through the body |
//! | 4 | body length (as stored) |
//! | 4 | flags: bit 0 set when the body is deflated (see below); no other bit is set |
//! | 8 | the data file's id (`meta.file_id`), so a log never replays into another file |
//! | 8 | log sequence number (LSN), one per record, increasing |
//! | n | body: rows of (table tag u8, key u64, value length u32, value) |
//!
//! **Deflated bodies.** A record longer than a page is written with its body deflated (fast
//! level) when that takes fewer pages: a 15-event request with 500-byte details is a 10.5 KB
//! body, three pages raw and one deflated, so the log writes a third of the bytes for it (issue
//! 21). Deflate costs the single writer ≈ 50 µs per 10 KB, so it is skipped when the log is
//! busy: a record that follows the last one by less than [`BUSY_GAP`] is written raw. At a
//! steady few hundred requests a second, where the bytes are what wears a small disk, records
//! are deflated; under a flood of single-event requests, where the commit thread is the
//! bottleneck (deflating every record cost 7–10 % of that throughput), they are not. A record
//! that fits one page is never compressed: nothing could be saved. Records of the previous
//! release (flags zero) read as before.
//!
//! Each appending transaction also writes its LSN to `meta.wal_lsn`, so the data file always
//! says which records it holds. Once a durable redb commit covers every record written, the log
//! starts again at offset 0, overwriting the file in place: after its first cycle, appending
//! changes no file size, and the `fdatasync` writes the record's pages and nothing else.
//!
//! **Replay** (at open, before anything reads the tables): records are read from offset 0 while
//! they are whole (magic, length, CRC), belong to this data file and each LSN is one more than
//! the last; the first that is not ends the log (a torn tail was never acknowledged; records of
//! an earlier cycle behind the current one have smaller LSNs). Those above the data file's
//! `wal_lsn` are inserted again, in order, in one durable transaction. If the first of them is
//! not `wal_lsn + 1`, the log does not continue this file (a restored backup) and is ignored with
//! a warning. After replay the log is emptied.

use std::fs::File;
use std::io::ErrorKind;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

const MAGIC: &[u8; 4] = b"AWL1";
const HEADER: usize = 32;
const PAGE: u64 = 4096;
/// A record started sooner than this after the last one was written is not deflated (see the
/// module docs): 500 records a second and more.
const BUSY_GAP: std::time::Duration = std::time::Duration::from_millis(2);
/// The flag bit of a deflated body.
const DEFLATED: u32 = 1;
/// What a deflated body may inflate to: a record body is never larger than [`DIRECT_BYTES`], so
/// anything past it is a corrupt record, not a reason to allocate.
const MAX_INFLATED: u64 = DIRECT_BYTES as u64;

/// Commits whose rows come to more than this are durable redb commits instead: redb's fixed
/// writes are small beside them, and logging them would write their bytes twice.
pub(super) const DIRECT_BYTES: usize = 64 * 1024;

/// The log's size before it must start over: when the next record would not fit, that commit
/// is made a durable redb commit, which covers every record, and the log restarts at 0.
pub(super) const CAPACITY: u64 = 8 * 1024 * 1024;

/// Which table a logged row goes back into.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Table {
    Inbox = 1,
    IdLog = 2,
}

/// One commit's rows as they are logged.
#[derive(Debug, Default)]
pub(super) struct Body {
    bytes: Vec<u8>,
    /// Rows past [`DIRECT_BYTES`] are not kept: that commit is a durable one.
    overflow: bool,
}

impl Body {
    /// Records a row the commit inserted.
    pub(super) fn row(&mut self, table: Table, key: u64, value: &[u8]) {
        if self.overflow {
            return;
        }
        if self.bytes.len() + 13 + value.len() > DIRECT_BYTES {
            self.overflow = true;
            self.bytes = Vec::new();
            return;
        }
        self.bytes.push(table as u8);
        self.bytes.extend_from_slice(&key.to_le_bytes());
        self.bytes
            .extend_from_slice(&(value.len() as u32).to_le_bytes());
        self.bytes.extend_from_slice(value);
    }

    /// Whether the commit inserted nothing (all duplicates): it need not be logged.
    pub(super) fn is_empty(&self) -> bool {
        !self.overflow && self.bytes.is_empty()
    }
}

/// A row read back from the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Row {
    pub table: Table,
    pub key: u64,
    pub value: Vec<u8>,
}

/// A whole record read back from the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Record {
    pub lsn: u64,
    pub rows: Vec<Row>,
}

/// The open log. Appends are serialized by the store (one journal commit at a time).
#[derive(Debug)]
pub(super) struct Wal {
    file: File,
    path: PathBuf,
    file_id: u64,
    /// Where the next record goes (a page boundary).
    offset: u64,
    /// The LSN the next appending commit gets.
    next: u64,
    /// The LSN of the last record written since the log last started over (0: none).
    written: u64,
    /// Reused for each record.
    buf: Vec<u8>,
    /// Reused for each deflated body.
    deflated: Vec<u8>,
    /// When the last record was written: records closer than `busy_gap` are written raw.
    last_append: Option<std::time::Instant>,
    busy_gap: std::time::Duration,
    /// Rows of small commits logged here and not yet in redb (see [`super::tail`]).
    pub(super) tail: super::tail::Tail,
    /// The last sequence number an append gave out since the log was opened (`None`: read it
    /// from the file), so a commit into the tail needs no transaction.
    pub(super) last_seq: Option<u64>,
}

/// The log's path for a data file.
pub(super) fn path_for(data: &Path) -> PathBuf {
    let mut p = data.as_os_str().to_owned();
    p.push(".wal");
    PathBuf::from(p)
}

fn io_error(path: &Path, what: &str, e: std::io::Error) -> super::StoreError {
    super::StoreError::Db(format!("{}: {what}: {e}", path.display()))
}

/// Every whole record of the log, in order, for the data file `file_id` (see the module docs).
pub(super) fn read(path: &Path, file_id: u64) -> Result<Vec<Record>, super::StoreError> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io_error(path, "cannot read the append log", e)),
    };
    let mut out: Vec<Record> = Vec::new();
    let mut at = 0usize;
    while let Some(head) = bytes.get(at..at + HEADER) {
        let len = u32::from_le_bytes(head[8..12].try_into().expect("4 bytes")) as usize;
        let Some(body) = bytes.get(at + HEADER..at + HEADER + len) else {
            break;
        };
        let crc = u32::from_le_bytes(head[4..8].try_into().expect("4 bytes"));
        let flags = u32::from_le_bytes(head[12..16].try_into().expect("4 bytes"));
        let mut h = crc32fast::Hasher::new();
        h.update(&head[8..]);
        h.update(body);
        let id = u64::from_le_bytes(head[16..24].try_into().expect("8 bytes"));
        let lsn = u64::from_le_bytes(head[24..32].try_into().expect("8 bytes"));
        if &head[..4] != MAGIC
            || h.finalize() != crc
            || id != file_id
            || out.last().is_some_and(|r| r.lsn + 1 != lsn)
            || flags & !DEFLATED != 0
        {
            break;
        }
        let inflated;
        let body = if flags & DEFLATED != 0 {
            let Some(b) = inflate(body) else {
                break;
            };
            inflated = b;
            &inflated[..]
        } else {
            body
        };
        let Some(rows) = parse_body(body) else {
            break;
        };
        out.push(Record { lsn, rows });
        at = pad(at + HEADER + len);
    }
    Ok(out)
}

fn parse_body(mut body: &[u8]) -> Option<Vec<Row>> {
    let mut rows = Vec::new();
    while !body.is_empty() {
        let table = match *body.first()? {
            1 => Table::Inbox,
            2 => Table::IdLog,
            _ => return None,
        };
        let key = u64::from_le_bytes(body.get(1..9)?.try_into().ok()?);
        let len = u32::from_le_bytes(body.get(9..13)?.try_into().ok()?) as usize;
        let value = body.get(13..13 + len)?.to_vec();
        body = &body[13 + len..];
        rows.push(Row { table, key, value });
    }
    Some(rows)
}

/// A deflated body's rows, or `None` when it does not inflate (a corrupt record ends the log).
fn inflate(body: &[u8]) -> Option<Vec<u8>> {
    super::deflate::inflate(body, MAX_INFLATED).ok()
}

/// `body` deflated into `out` when that takes fewer log pages than `body` raw.
fn deflate_if_smaller(body: &[u8], out: &mut Vec<u8>) -> bool {
    if HEADER + body.len() <= PAGE as usize {
        return false;
    }
    out.clear();
    super::deflate::deflate_into(out, body);
    pad(HEADER + out.len()) < pad(HEADER + body.len())
}

fn pad(n: usize) -> usize {
    n.div_ceil(PAGE as usize) * PAGE as usize
}

impl Wal {
    /// Opens (creating it private) and empties the log of the data file `file_id`, which holds
    /// LSNs through `held`; call after replay has made what the log held durable.
    pub(super) fn create(path: &Path, file_id: u64, held: u64) -> Result<Wal, super::StoreError> {
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(path)
            .map_err(|e| io_error(path, "cannot open the append log", e))?;
        file.set_len(0)
            .and_then(|_| file.sync_all())
            .map_err(|e| io_error(path, "cannot empty the append log", e))?;
        Ok(Wal {
            file,
            path: path.to_path_buf(),
            file_id,
            offset: 0,
            next: held + 1,
            written: 0,
            buf: Vec::new(),
            deflated: Vec::new(),
            last_append: None,
            busy_gap: BUSY_GAP,
            tail: super::tail::Tail::default(),
            last_seq: None,
        })
    }

    /// Whether a record of this body fits before the log must start over.
    pub(super) fn fits(&self, body: &Body) -> bool {
        !body.overflow && self.offset + pad(HEADER + body.bytes.len()) as u64 <= CAPACITY
    }

    /// The LSN the next appending commit writes to `meta.wal_lsn`.
    pub(super) fn next_lsn(&self) -> u64 {
        self.next
    }

    /// Starts the log over once the data file durably holds every record written (`durable` is
    /// its `wal_lsn` as of its last durable commit).
    pub(super) fn restart_if_covered(&mut self, durable: u64) {
        if durable >= self.written {
            self.offset = 0;
            self.written = 0;
        }
    }

    /// A durable redb commit holds every record, so the log starts over; `took_lsn` when that
    /// commit wrote [`Self::next_lsn`] to `meta.wal_lsn` (its record could not be written).
    pub(super) fn committed_durably(&mut self, took_lsn: bool) {
        self.next += u64::from(took_lsn);
        self.offset = 0;
        self.written = 0;
    }

    /// Appends the record of LSN [`Self::next_lsn`] and waits until it is on the disk. Returns
    /// the bytes written.
    pub(super) fn append(&mut self, body: &Body) -> Result<u64, super::StoreError> {
        debug_assert!(!body.overflow);
        let lsn = self.next;
        let idle = self
            .last_append
            .is_none_or(|t| t.elapsed() >= self.busy_gap);
        let (stored, flags) = if idle && deflate_if_smaller(&body.bytes, &mut self.deflated) {
            (&self.deflated, DEFLATED)
        } else {
            (&body.bytes, 0)
        };
        let buf = &mut self.buf;
        buf.clear();
        buf.extend_from_slice(MAGIC);
        buf.extend_from_slice(&[0; 4]);
        buf.extend_from_slice(&(stored.len() as u32).to_le_bytes());
        buf.extend_from_slice(&flags.to_le_bytes());
        buf.extend_from_slice(&self.file_id.to_le_bytes());
        buf.extend_from_slice(&lsn.to_le_bytes());
        buf.extend_from_slice(stored);
        let crc = crc32fast::hash(&buf[8..]);
        buf[4..8].copy_from_slice(&crc.to_le_bytes());
        buf.resize(pad(buf.len()), 0);
        self.file
            .write_all_at(buf, self.offset)
            .and_then(|_| self.file.sync_data())
            .map_err(|e| io_error(&self.path, "cannot write the append log", e))?;
        let _log = super::written::attribute("append_log");
        super::written::count(buf.len() as u64);
        self.offset += buf.len() as u64;
        self.last_append = Some(std::time::Instant::now());
        self.written = lsn;
        self.next = lsn + 1;
        Ok(buf.len() as u64)
    }

    /// The log's current end, for tests.
    #[cfg(test)]
    pub(super) fn offset(&self) -> u64 {
        self.offset
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(rows: &[(Table, u64, &[u8])]) -> Body {
        let mut b = Body::default();
        for (t, k, v) in rows {
            b.row(*t, *k, v);
        }
        b
    }

    /// Bytes deflate cannot shrink (xorshift), so their record stays raw.
    fn noise(n: usize) -> Vec<u8> {
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect()
    }

    /// A page-long run of event-like text, as a request's inbox row holds it.
    /// A fresh log in a temp dir, for data file `file_id`, that deflates even back-to-back records
    /// (no busy gap), for the tests of deflated records.
    fn eager_wal(file_id: u64) -> (tempfile::TempDir, std::path::PathBuf, Wal) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.wal");
        let mut wal = Wal::create(&path, file_id, 0).unwrap();
        wal.busy_gap = std::time::Duration::ZERO;
        (dir, path, wal)
    }

    fn text(n: usize) -> Vec<u8> {
        (0..n)
            .map(|i| format!("{{\"details\":\"match {i}: the customer asked\"}}"))
            .collect::<String>()
            .into_bytes()
    }

    fn flags_at(path: &Path, offset: u64) -> u32 {
        let bytes = std::fs::read(path).unwrap();
        let at = offset as usize;
        u32::from_le_bytes(bytes[at + 12..at + 16].try_into().unwrap())
    }

    fn lsns(path: &Path, id: u64) -> Vec<u64> {
        read(path, id).unwrap().iter().map(|r| r.lsn).collect()
    }

    #[test]
    fn records_read_back_whole_and_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.wal");
        let mut wal = Wal::create(&path, 7, 0).unwrap();
        wal.append(&body(&[(Table::Inbox, 5, b"abc"), (Table::IdLog, 9, b"")]))
            .unwrap();
        let noise = noise(5000);
        wal.append(&body(&[(Table::Inbox, 6, &noise)])).unwrap();
        assert_eq!(wal.offset(), 3 * PAGE, "records start on page boundaries");
        let records = read(&path, 7).unwrap();
        assert_eq!(
            records,
            vec![
                Record {
                    lsn: 1,
                    rows: vec![
                        Row {
                            table: Table::Inbox,
                            key: 5,
                            value: b"abc".to_vec()
                        },
                        Row {
                            table: Table::IdLog,
                            key: 9,
                            value: vec![]
                        }
                    ]
                },
                Record {
                    lsn: 2,
                    rows: vec![Row {
                        table: Table::Inbox,
                        key: 6,
                        value: noise
                    }]
                }
            ]
        );
        assert!(read(&path, 8).unwrap().is_empty(), "another file's log");
    }

    #[test]
    fn a_body_longer_than_a_page_is_deflated_when_that_takes_fewer_pages() {
        let (_dir, path, mut wal) = eager_wal(3);
        let rows = text(300);
        assert!(rows.len() > 3 * PAGE as usize);
        let written = wal
            .append(&body(&[(Table::Inbox, 1, &rows), (Table::IdLog, 2, b"id")]))
            .unwrap();
        assert_eq!(
            written,
            PAGE,
            "a text body of {} bytes takes one page",
            rows.len()
        );
        assert_eq!(flags_at(&path, 0), DEFLATED);
        // Incompressible: written raw, flags zero.
        let raw = noise(6000);
        wal.append(&body(&[(Table::Inbox, 2, &raw)])).unwrap();
        assert_eq!(flags_at(&path, PAGE), 0);
        // Small: never compressed.
        wal.append(&body(&[(Table::Inbox, 3, &text(10))])).unwrap();
        assert_eq!(flags_at(&path, 3 * PAGE), 0);
        let records = read(&path, 3).unwrap();
        assert_eq!(records.len(), 3);
        assert_eq!(records[0].rows[0].value, rows);
        assert_eq!(records[0].rows[1].value, b"id");
        assert_eq!(records[1].rows[0].value, raw);
        assert_eq!(records[2].rows[0].value, text(10));
    }

    #[test]
    fn records_close_behind_the_last_are_written_raw_and_idle_ones_deflated() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.wal");
        let mut wal = Wal::create(&path, 3, 0).unwrap();
        wal.busy_gap = std::time::Duration::from_secs(3600);
        let rows = text(300);
        assert_eq!(
            wal.append(&body(&[(Table::Inbox, 1, &rows)])).unwrap(),
            PAGE
        );
        assert_eq!(
            flags_at(&path, 0),
            DEFLATED,
            "the first record: the log was idle"
        );
        let raw = wal.append(&body(&[(Table::Inbox, 2, &rows)])).unwrap();
        assert!(raw > PAGE, "a busy log writes the record raw ({raw} bytes)");
        assert_eq!(flags_at(&path, PAGE), 0);
        wal.busy_gap = std::time::Duration::ZERO;
        wal.append(&body(&[(Table::Inbox, 3, &rows)])).unwrap();
        assert_eq!(flags_at(&path, PAGE + raw), DEFLATED);
        let values: Vec<Vec<u8>> = read(&path, 3)
            .unwrap()
            .into_iter()
            .map(|r| r.rows[0].value.clone())
            .collect();
        assert_eq!(values, vec![rows.clone(), rows.clone(), rows]);
    }

    #[test]
    fn a_record_of_the_previous_release_reads_as_before() {
        // Written byte by byte as the release before deflated bodies wrote it: flags zero, the
        // body raw, even past a page.
        let value = text(200);
        let mut rows = vec![Table::Inbox as u8];
        rows.extend_from_slice(&9u64.to_le_bytes());
        rows.extend_from_slice(&(value.len() as u32).to_le_bytes());
        rows.extend_from_slice(&value);
        let mut rec = b"AWL1".to_vec();
        rec.extend_from_slice(&[0; 4]);
        rec.extend_from_slice(&(rows.len() as u32).to_le_bytes());
        rec.extend_from_slice(&[0; 4]);
        rec.extend_from_slice(&5u64.to_le_bytes());
        rec.extend_from_slice(&1u64.to_le_bytes());
        rec.extend_from_slice(&rows);
        let crc = crc32fast::hash(&rec[8..]);
        rec[4..8].copy_from_slice(&crc.to_le_bytes());
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.wal");
        std::fs::write(&path, &rec).unwrap();
        let records = read(&path, 5).unwrap();
        assert_eq!(records.len(), 1);
        assert_eq!(records[0].rows[0].key, 9);
        assert_eq!(records[0].rows[0].value, value);
    }

    #[test]
    fn a_record_with_an_unknown_flag_or_a_corrupt_deflated_body_ends_the_log() {
        let (_dir, path, mut wal) = eager_wal(1);
        wal.append(&body(&[(Table::Inbox, 1, b"a")])).unwrap();
        wal.append(&body(&[(Table::Inbox, 2, &text(300))])).unwrap();
        assert_eq!(flags_at(&path, PAGE), DEFLATED);
        let bytes = std::fs::read(&path).unwrap();
        let recrc = |b: &mut Vec<u8>| {
            let at = PAGE as usize;
            let len = u32::from_le_bytes(b[at + 8..at + 12].try_into().unwrap()) as usize;
            let crc = crc32fast::hash(&b[at + 8..at + HEADER + len]);
            b[at + 4..at + 8].copy_from_slice(&crc.to_le_bytes());
        };
        // A flag this build does not know, with a valid CRC: not read as rows.
        let mut unknown = bytes.clone();
        unknown[PAGE as usize + 12] |= 2;
        recrc(&mut unknown);
        std::fs::write(&path, &unknown).unwrap();
        assert_eq!(lsns(&path, 1), vec![1]);
        // A deflated body that does not inflate, with a valid CRC.
        let mut garbled = bytes.clone();
        for b in &mut garbled[PAGE as usize + HEADER..PAGE as usize + HEADER + 40] {
            *b = 0xff;
        }
        recrc(&mut garbled);
        std::fs::write(&path, &garbled).unwrap();
        assert_eq!(lsns(&path, 1), vec![1]);
    }

    #[test]
    fn a_torn_or_corrupt_record_ends_the_log() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.wal");
        let mut wal = Wal::create(&path, 1, 0).unwrap();
        for lsn in 1..=3 {
            wal.append(&body(&[(Table::Inbox, lsn, &[lsn as u8; 100])]))
                .unwrap();
        }
        let bytes = std::fs::read(&path).unwrap();
        // Torn: the last record cut short.
        std::fs::write(&path, &bytes[..2 * PAGE as usize + 60]).unwrap();
        assert_eq!(lsns(&path, 1), vec![1, 2]);
        // Corrupt: one flipped bit in the second record's body.
        let mut bad = bytes.clone();
        bad[PAGE as usize + HEADER + 20] ^= 1;
        std::fs::write(&path, &bad).unwrap();
        assert_eq!(lsns(&path, 1), vec![1]);
    }

    #[test]
    fn after_starting_over_the_older_records_behind_are_not_read() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.wal");
        let mut wal = Wal::create(&path, 1, 0).unwrap();
        for lsn in 1..=4 {
            wal.append(&body(&[(Table::Inbox, lsn, b"x")])).unwrap();
        }
        wal.restart_if_covered(3);
        assert_eq!(wal.offset(), 4 * PAGE, "record 4 is not covered yet");
        wal.restart_if_covered(4);
        assert_eq!(wal.offset(), 0);
        assert_eq!(wal.next_lsn(), 5);
        wal.append(&body(&[(Table::Inbox, 5, b"y")])).unwrap();
        assert_eq!(
            lsns(&path, 1),
            vec![5],
            "records 2..4 behind record 5 are stale"
        );
    }

    #[test]
    fn a_large_body_is_not_kept_and_asks_for_a_durable_commit() {
        let mut b = Body::default();
        b.row(Table::Inbox, 1, &vec![0; DIRECT_BYTES]);
        assert!(b.overflow && b.bytes.is_empty(), "its rows are not kept");
        assert!(!b.is_empty());
        let dir = tempfile::tempdir().unwrap();
        let wal = Wal::create(&dir.path().join("x.wal"), 1, 0).unwrap();
        assert!(!wal.fits(&b));
        assert!(Body::default().is_empty());
    }
}
