//! What a start of the binary runs before main, and what it leaves for later.
//!
//! Most `strata` processes are short (a mount, an umount, a `ps`), and before main a C++
//! program runs its static initializers. RocksDB has some 170 of them, which build its option
//! tables on a fresh heap: about 2 ms of every start, though only a daemon that opens its inode
//! table's RocksDB and the verbs that keep records use it. link/rocksdb-init.ld moves them out
//! of .init_array into a table of their own, and `rocksdb_ready` runs that table, once, before
//! the first use. A mount with a fresh upper, or one left clean, never opens RocksDB, so most
//! processes never run them.

use std::sync::Once;

extern "C" {
    // Bounds of the table link/rocksdb-init.ld makes.
    static __strata_deferred_init_start: InitFn;
    static __strata_deferred_init_end: InitFn;
}

type InitFn = extern "C" fn();

/// RocksDB's static initializers, run once, in link order; called before anything of RocksDB
/// is made (crate::inode's database options are its only way in).
pub fn rocksdb_ready() {
    static DONE: Once = Once::new();
    DONE.call_once(|| {
        for f in deferred() {
            f();
        }
    });
}

/// The initializers the linker set aside.
fn deferred() -> &'static [InitFn] {
    unsafe {
        let start = std::ptr::addr_of!(__strata_deferred_init_start);
        let end = std::ptr::addr_of!(__strata_deferred_init_end);
        std::slice::from_raw_parts(start, end.offset_from(start) as usize)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The linker script still matches RocksDB's archive: its initializers are set aside (so
    /// a start does not run them), and RocksDB works once they have run.
    #[test]
    fn rocksdb_initializers_wait_for_their_first_use() {
        assert!(
            deferred().len() > 100,
            "only {} static initializers set aside: is link/rocksdb-init.ld still linked?",
            deferred().len()
        );
        let dir = tempfile::tempdir().unwrap();
        let db = crate::inode::open_db(dir.path(), 1 << 20).unwrap();
        db.put(b"k", b"v").unwrap();
        assert_eq!(db.get(b"k").unwrap().as_deref(), Some(&b"v"[..]));
    }
}
