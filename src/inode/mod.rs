//! The persistent inode table.
//!
//! strata gives every file an st_ino that never changes. A file that lives in one layer only gets
//! a number derived from (layer, inode in that layer), which needs no table at all. The table
//! records the one case that derivation cannot cover: a file copied up from a lower layer keeps
//! the number it had below, so its upper inode maps to the lower-derived number. Hard links share
//! the upper inode and so share the number; a rename keeps the upper inode and so keeps it too.
//!
//! A copied-up file that has other names in its lower layer (a hard link) also records how many
//! names it had there and how many of them the upper holds already, so that the link count it
//! shows stays right while the rest are linked up one by one (see union::link).
//!
//! The whole table is loaded into a DashMap at mount: lookups never touch RocksDB. After a clean
//! shutdown it is loaded from the snapshot in the clean marker, without opening RocksDB at all
//! (see snapshot).
//!
//! A copied-up file's number must survive a power loss, not only a crash of the daemon. It is
//! kept twice: in its record here, written to RocksDB's log without waiting for the disk, and
//! in an xattr on the copy itself, which the copy-up writes before the fsync that makes the
//! copy's data durable, so no copy is ever visible without it (union::recover). A clean
//! shutdown syncs the log and leaves a `clean` marker beside the table; the first write of a
//! mount removes the marker, durably. A table found without its marker was not shut down
//! cleanly, and the mount then reads the xattrs back into it before serving. Copies that cannot
//! carry the xattr (symlinks and special files in unprivileged mounts) and hard-linked lower
//! files, whose record also counts their links, are synced to the log instead.

mod snapshot;

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, OnceLock};

use anyhow::{Context, Result};
use dashmap::DashMap;

/// Bits reserved for the inode number inside a layer; the layer index sits above them.
pub const INO_BITS: u32 = 48;
const INO_MASK: u64 = (1 << INO_BITS) - 1;

/// The st_ino strata reports for inode `ino` of layer `layer` (0 = upper, 1.. = lowers).
/// Inode numbers wider than 48 bits are folded, which can in theory collide; filesystems that
/// hand out such numbers are rare (ext4 and tmpfs stay below 2^32).
pub fn encode(layer: usize, ino: u64) -> u64 {
    let folded = (ino & INO_MASK) ^ (ino >> INO_BITS);
    ((layer as u64 + 1) << INO_BITS) | folded
}

/// A RocksDB database for strata's small records (made if missing): no compression, one
/// background job, a short info log.
pub fn open_db(dir: &Path, write_buffer: usize) -> Result<rocksdb::DB, rocksdb::Error> {
    rocksdb::DB::open(&db_options(write_buffer), dir)
}

fn db_options(write_buffer: usize) -> rocksdb::Options {
    crate::start::rocksdb_ready();
    let mut opts = rocksdb::Options::default();
    opts.create_if_missing(true);
    opts.set_compression_type(rocksdb::DBCompressionType::None);
    opts.set_max_background_jobs(1);
    opts.set_keep_log_file_num(2);
    opts.set_max_log_file_size(1 << 20);
    opts.set_write_buffer_size(write_buffer);
    opts
}

/// A RocksDB error as an io::Error that keeps the errno of a full or over-quota filesystem (RocksDB
/// reports them as text), so that the caller's request fails with ENOSPC or EDQUOT, not EIO.
fn db_error(e: rocksdb::Error) -> std::io::Error {
    let msg = e.into_string();
    for (text, errno) in [
        ("No space left on device", libc::ENOSPC),
        ("Disk quota exceeded", libc::EDQUOT),
        ("Read-only file system", libc::EROFS),
    ] {
        if msg.contains(text) {
            return std::io::Error::from_raw_os_error(errno);
        }
    }
    std::io::Error::other(msg)
}

/// The errno for a request that failed on the table: the filesystem's own where it gave one.
pub fn errno(e: &std::io::Error) -> i32 {
    e.raw_os_error().unwrap_or(libc::EIO)
}

/// What the table knows of one upper inode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Record {
    /// The st_ino it carries.
    pub ino: u64,
    /// For a hard-linked lower file: (names it had in its lower layer, how many of those the
    /// upper has linked up so far). Its upper inode has one more link, in the workdir's index.
    pub links: Option<(u32, u32)>,
}

impl Record {
    fn encode(&self) -> Vec<u8> {
        match self.links {
            None => bincode::serialize(&self.ino).unwrap(),
            Some(l) => bincode::serialize(&(self.ino, l.0, l.1)).unwrap(),
        }
    }

    fn decode(v: &[u8]) -> Option<Record> {
        if v.len() == 8 {
            let ino = bincode::deserialize(v).ok()?;
            return Some(Record { ino, links: None });
        }
        let (ino, lower, linked): (u64, u32, u32) = bincode::deserialize(v).ok()?;
        Some(Record {
            ino,
            links: Some((lower, linked)),
        })
    }
}

pub struct InodeTable {
    map: DashMap<u64, Record>,
    /// Where the table lives (None: in memory only).
    dir: Option<std::path::PathBuf>,
    /// Opened for writing at the first write, not at mount: a mount that writes no record
    /// (every read-only use, and most container starts) pays neither for making a table nor
    /// for the files and syncs that opening one for writing costs.
    db: OnceLock<rocksdb::DB>,
    making: Mutex<()>,
    /// The table was found without its clean-shutdown marker, and the copies' own record of
    /// their numbers has not been read back yet: records may be missing.
    unclean: AtomicBool,
    /// The marker is not on disk (this mount removed it, or found none).
    marker_gone: AtomicBool,
    marking: Mutex<()>,
}

/// Left beside the table by a clean shutdown, removed by a mount's first write.
const CLEAN_MARKER: &str = "clean";

fn key(upper_ino: u64) -> [u8; 9] {
    let mut k = [0u8; 9];
    k[0] = b'u';
    k[1..].copy_from_slice(&upper_ino.to_be_bytes());
    k
}

impl InodeTable {
    /// A table kept in memory only (read-only mounts).
    pub fn in_memory() -> Self {
        Self::at(None)
    }

    fn at(dir: Option<&Path>) -> Self {
        InodeTable {
            map: DashMap::new(),
            dir: dir.map(Path::to_path_buf),
            db: OnceLock::new(),
            making: Mutex::new(()),
            unclean: AtomicBool::new(false),
            marker_gone: AtomicBool::new(true),
            marking: Mutex::new(()),
        }
    }

    /// Open the table at `dir` and load it; a table that does not exist yet is made at the
    /// first write.
    pub fn open(dir: &Path) -> Result<Self> {
        let t = Self::at(Some(dir));
        if !dir.join("CURRENT").exists() {
            return Ok(t);
        }
        let marker = match std::fs::read(dir.join(CLEAN_MARKER)) {
            Ok(data) => Some(data),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => {
                return Err(e)
                    .with_context(|| format!("cannot read {}", dir.join(CLEAN_MARKER).display()))
            }
        };
        let clean = marker.is_some();
        t.unclean.store(!clean, Ordering::Release);
        t.marker_gone.store(!clean, Ordering::Release);
        if let Some(records) = marker.as_deref().and_then(snapshot::decode) {
            for (upper, rec) in records {
                t.map.insert(upper, rec);
            }
            return Ok(t);
        }
        // Read-only: no new log, manifest or options file, so nothing to sync. The table is
        // opened for writing only when the mount first writes to it (see `writer`).
        let db = rocksdb::DB::open_for_read_only(&db_options(4 << 20), dir, false)
            .with_context(|| format!("cannot open the inode table at {}", dir.display()))?;
        for item in db.prefix_iterator(b"u") {
            let (k, v) = item.context("reading the inode table")?;
            if k.len() != 9 || k[0] != b'u' {
                break;
            }
            let upper = u64::from_be_bytes(k[1..9].try_into().unwrap());
            let rec = Record::decode(&v).context("corrupt inode table entry")?;
            t.map.insert(upper, rec);
        }
        Ok(t)
    }

    /// The database to write to, made if it is not there yet.
    fn writer(&self) -> std::io::Result<Option<&rocksdb::DB>> {
        let Some(dir) = &self.dir else {
            return Ok(None);
        };
        if let Some(db) = self.db.get() {
            return Ok(Some(db));
        }
        let _one = self.making.lock().unwrap();
        if self.db.get().is_none() {
            let db = open_db(dir, 4 << 20).map_err(db_error)?;
            let _ = self.db.set(db);
        }
        Ok(self.db.get())
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// The number a copied-up upper inode stands for, if it was copied up.
    pub fn get(&self, upper_ino: u64) -> Option<u64> {
        self.map.get(&upper_ino).map(|v| v.ino)
    }

    /// The whole record of a copied-up upper inode.
    pub fn record(&self, upper_ino: u64) -> Option<Record> {
        self.map.get(&upper_ino).map(|v| *v)
    }

    /// Was the table left without a clean shutdown (a crash, a kill, a power loss)? Then the
    /// copies' xattrs must be read back before the mount serves (union::recover).
    pub fn unclean(&self) -> bool {
        self.unclean.load(Ordering::Acquire)
    }

    /// The records are whole again: a clean shutdown may leave its marker.
    pub fn recovered(&self) {
        self.unclean.store(false, Ordering::Release);
    }

    /// Before this mount's first write: remove the clean marker and make its removal durable,
    /// so that a power loss after any unsynced write is always seen as an unclean shutdown.
    fn mark_dirty(&self) -> std::io::Result<()> {
        if self.marker_gone.load(Ordering::Acquire) {
            return Ok(());
        }
        let _one = self.marking.lock().unwrap();
        if self.marker_gone.load(Ordering::Acquire) {
            return Ok(());
        }
        if let Some(dir) = &self.dir {
            match std::fs::remove_file(dir.join(CLEAN_MARKER)) {
                Ok(()) => std::fs::File::open(dir)?.sync_all()?,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        self.marker_gone.store(true, Ordering::Release);
        Ok(())
    }

    /// Record what upper inode `upper_ino` stands for. Called before the copy is renamed into
    /// place; with `durable`, the entry is on disk when this returns, so a visible copy has its
    /// entry even after a power loss. Without it, the copy must carry its number itself.
    pub fn put(&self, upper_ino: u64, rec: Record, durable: bool) -> std::io::Result<()> {
        if let Some(db) = self.writer()? {
            self.mark_dirty()?;
            let mut wo = rocksdb::WriteOptions::default();
            wo.set_sync(durable);
            db.put_opt(key(upper_ino), rec.encode(), &wo)
                .map_err(db_error)?;
        }
        self.map.insert(upper_ino, rec);
        Ok(())
    }

    /// Forget an upper inode whose last link is gone, so that a new file that reuses the
    /// inode number does not inherit the old identity.
    pub fn remove(&self, upper_ino: u64) {
        if self.map.remove(&upper_ino).is_some() {
            // A record in the map is in a table on disk too: opened for writing if it is not.
            let db = match self.writer() {
                Ok(db) => db,
                Err(e) => {
                    log::warn!("inode table: cannot open it to delete entry {upper_ino}: {e}");
                    None
                }
            };
            if let Some(db) = db {
                if let Err(e) = self.mark_dirty() {
                    log::warn!("inode table: cannot remove the clean marker: {e}");
                }
                if let Err(e) = db.delete(key(upper_ino)) {
                    log::warn!("inode table: cannot delete entry {upper_ino}: {e}");
                }
            }
        }
    }

    /// Sync the write-ahead log. Memtables are not flushed: every entry is in the log, and
    /// RocksDB replays it at the next open. This keeps unmount quick, which matters because
    /// scripts unmount the filesystem beneath strata right after unmounting strata.
    /// After the log is synced, the clean marker says so (unsynced itself: a marker lost to a
    /// power loss only costs the next mount a recovery pass).
    pub fn flush(&self) {
        let db = match self.db.get() {
            Some(db) => Some(db),
            // Nothing written by this mount. A table found without its marker, and whole
            // again, still gets one, once the log it was found with is synced.
            None if self.marker_gone.load(Ordering::Acquire)
                && !self.unclean()
                && self
                    .dir
                    .as_ref()
                    .is_some_and(|d| d.join("CURRENT").exists()) =>
            {
                self.writer().unwrap_or_else(|e| {
                    log::warn!("inode table: cannot open it to sync its log: {e}");
                    None
                })
            }
            None => None,
        };
        if let Some(db) = db {
            if let Err(e) = db.flush_wal(true) {
                log::warn!("inode table: flush failed: {e}");
                return;
            }
            let _one = self.marking.lock().unwrap();
            if self.marker_gone.load(Ordering::Acquire) && !self.unclean() {
                if let Some(dir) = &self.dir {
                    match self.leave_marker(dir) {
                        Ok(()) => self.marker_gone.store(false, Ordering::Release),
                        Err(e) => log::warn!("inode table: cannot leave the clean marker: {e}"),
                    }
                }
            }
        }
    }
}

impl InodeTable {
    /// The clean marker, holding a snapshot of the records: written beside it and renamed into
    /// place, so a reader finds the whole file or none (or, after a power loss, one that fails
    /// its digest and is not used).
    fn leave_marker(&self, dir: &Path) -> std::io::Result<()> {
        let data = snapshot::encode(
            self.map
                .iter()
                .map(|e| (*e.key(), *e.value()))
                .collect::<Vec<_>>()
                .into_iter(),
        );
        let tmp = dir.join(format!("{CLEAN_MARKER}.tmp"));
        std::fs::write(&tmp, data)?;
        std::fs::rename(&tmp, dir.join(CLEAN_MARKER))
    }
}

impl Drop for InodeTable {
    fn drop(&mut self) {
        self.flush();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encode_keeps_layers_apart() {
        assert_ne!(encode(0, 5), encode(1, 5));
        assert_eq!(encode(2, 7) & INO_MASK, 7);
        assert_ne!(encode(0, 1), 1, "never collides with the FUSE root id");
    }

    #[test]
    fn table_persists_across_reopen() {
        let dir = tempfile::tempdir().unwrap();
        {
            let t = InodeTable::open(dir.path()).unwrap();
            let plain = |ino| Record { ino, links: None };
            t.put(42, plain(encode(1, 9)), true).unwrap();
            t.put(43, plain(encode(2, 10)), false).unwrap();
            let linked = Record {
                ino: encode(1, 11),
                links: Some((3, 2)),
            };
            t.put(44, linked, true).unwrap();
            t.remove(43);
        }
        let t = InodeTable::open(dir.path()).unwrap();
        assert_eq!(t.get(42), Some(encode(1, 9)));
        assert_eq!(t.get(43), None);
        assert_eq!(t.record(44).unwrap().links, Some((3, 2)));
        assert_eq!(t.len(), 2);
    }

    #[test]
    fn a_table_is_opened_for_writing_only_when_written() {
        let dir = tempfile::tempdir().unwrap();
        let plain = |ino| Record { ino, links: None };
        {
            let t = InodeTable::open(dir.path()).unwrap();
            t.put(42, plain(encode(1, 9)), false).unwrap();
            t.put(43, plain(encode(1, 10)), false).unwrap();
        }
        assert!(dir.path().join(CLEAN_MARKER).exists());
        let files = || std::fs::read_dir(dir.path()).unwrap().count();
        let before = files();
        {
            // A mount that only reads: no new log, manifest or options file.
            let t = InodeTable::open(dir.path()).unwrap();
            assert_eq!(t.get(42), Some(encode(1, 9)));
        }
        assert_eq!(files(), before, "a read-only use of the table wrote to it");
        {
            // A removal after a read-only load reaches the disk.
            let t = InodeTable::open(dir.path()).unwrap();
            t.remove(42);
        }
        let t = InodeTable::open(dir.path()).unwrap();
        assert_eq!(t.get(42), None);
        assert_eq!(t.get(43), Some(encode(1, 10)));
    }

    #[test]
    fn a_clean_table_is_read_from_its_marker_and_rocksdb_only_when_written() {
        let dir = tempfile::tempdir().unwrap();
        let plain = |ino| Record { ino, links: None };
        let linked = Record {
            ino: encode(1, 11),
            links: Some((3, 2)),
        };
        {
            let t = InodeTable::open(dir.path()).unwrap();
            t.put(42, plain(encode(1, 9)), false).unwrap();
            t.put(44, linked, true).unwrap();
        }
        // Hide RocksDB's own files: a mount after a clean shutdown must not need them.
        let aside = tempfile::tempdir().unwrap();
        let moved: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .filter(|n| n != "CURRENT" && n != CLEAN_MARKER)
            .collect();
        for n in &moved {
            std::fs::rename(dir.path().join(n), aside.path().join(n)).unwrap();
        }
        {
            let t = InodeTable::open(dir.path()).unwrap();
            assert!(!t.unclean());
            assert_eq!(t.get(42), Some(encode(1, 9)));
            assert_eq!(t.record(44), Some(linked));
            assert_eq!(t.len(), 2);
        }
        for n in &moved {
            std::fs::rename(aside.path().join(n), dir.path().join(n)).unwrap();
        }
        {
            // The first write takes the marker away before it reaches RocksDB ...
            let t = InodeTable::open(dir.path()).unwrap();
            t.put(45, plain(encode(1, 12)), false).unwrap();
            assert!(!dir.path().join(CLEAN_MARKER).exists());
            std::mem::forget(t); // a crash: no clean shutdown, no new snapshot
        }
        // ... so the next mount reads RocksDB, and finds every record.
        let t = InodeTable::open(dir.path()).unwrap();
        assert!(t.unclean());
        assert_eq!(t.get(42), Some(encode(1, 9)));
        assert_eq!(t.get(45), Some(encode(1, 12)));
        drop(t);
        // A marker that is not a whole snapshot (an older strata's empty one) still says clean,
        // and the records come from RocksDB.
        std::fs::write(dir.path().join(CLEAN_MARKER), b"").unwrap();
        let t = InodeTable::open(dir.path()).unwrap();
        assert!(!t.unclean());
        assert_eq!(t.get(44), Some(encode(1, 11)));
        assert_eq!(t.get(45), Some(encode(1, 12)));
    }

    #[test]
    fn an_unclean_table_gets_its_marker_back_without_writes() {
        let dir = tempfile::tempdir().unwrap();
        {
            let t = InodeTable::open(dir.path()).unwrap();
            t.put(
                42,
                Record {
                    ino: 7,
                    links: None,
                },
                false,
            )
            .unwrap();
        }
        std::fs::remove_file(dir.path().join(CLEAN_MARKER)).unwrap();
        let t = InodeTable::open(dir.path()).unwrap();
        assert!(t.unclean());
        t.recovered();
        t.flush();
        assert!(dir.path().join(CLEAN_MARKER).exists());
    }
}
