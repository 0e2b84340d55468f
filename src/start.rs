//! What every start of the binary does before the C++ static initializers run.
//!
//! Most `strata` processes are short (a mount, an umount, a `ps`), and page faults are most of
//! what a short one costs before main: RocksDB's static initializers and clap touch some
//! 600 KiB of fresh heap and the zero-filled `.bss`, one fault per 4 KiB page, and on a VM a
//! fault costs several microseconds. Asking the kernel for those pages in one call each
//! (MADV_POPULATE_WRITE, Linux 5.14) does the same work without a fault per page. On older
//! kernels the call fails and the pages fault in as before.

use std::ffi::c_void;

/// The heap made ready: about what the static initializers and a mount's start use.
const HEAP_CHUNK: usize = 120 << 10;
const HEAP_CHUNKS: usize = 5;

// Runs before the C++ initializers, which the linker places after every prioritised entry.
#[used]
#[link_section = ".init_array.00101"]
static PREFAULT: extern "C" fn() = prefault;

extern "C" {
    static __bss_start: u8;
    static _end: u8;
}

extern "C" fn prefault() {
    unsafe {
        populate(
            std::ptr::addr_of!(__bss_start) as usize,
            std::ptr::addr_of!(_end) as usize,
        );
        // Chunks below malloc's mmap threshold come from the heap; a small allocation after
        // them, never freed, keeps the freed chunks off the heap's top, so free() does not give
        // the pages straight back to the kernel. The next allocations are carved from them.
        let mut chunks = [std::ptr::null_mut::<c_void>(); HEAP_CHUNKS];
        for c in chunks.iter_mut() {
            *c = libc::malloc(HEAP_CHUNK);
        }
        // black_box: an allocation nobody reads is otherwise optimised away.
        std::hint::black_box(libc::malloc(16));
        for &c in &chunks {
            if !c.is_null() {
                populate(c as usize, c as usize + HEAP_CHUNK);
                libc::free(c);
            }
        }
    }
}

/// Fault in the whole pages within [start, end) for writing, in one call.
unsafe fn populate(start: usize, end: usize) {
    let page = 4096;
    let (lo, hi) = ((start + page - 1) & !(page - 1), end & !(page - 1));
    if hi > lo {
        libc::madvise(lo as *mut c_void, hi - lo, libc::MADV_POPULATE_WRITE);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Resident pages of [start, start + len), from mincore.
    fn resident(start: usize, len: usize) -> usize {
        let pages = len / 4096;
        let mut v = vec![0u8; pages];
        assert_eq!(
            unsafe { libc::mincore(start as *mut c_void, len, v.as_mut_ptr()) },
            0
        );
        v.iter().filter(|&&b| b & 1 == 1).count()
    }

    #[test]
    fn populate_makes_pages_resident() {
        let len = 64 * 4096;
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        assert_ne!(p, libc::MAP_FAILED);
        let start = p as usize;
        assert_eq!(resident(start, len), 0);
        // A range that is not page-aligned populates only the whole pages inside it.
        unsafe { populate(start + 1, start + len) };
        assert_eq!(resident(start, len), 63);
        unsafe { libc::munmap(p, len) };
    }
}
