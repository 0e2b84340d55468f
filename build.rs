//! Links the C++ runtime that RocksDB needs statically, and keeps RocksDB's static
//! initializers from running at every start.
//!
//! Every `strata` command is a short process (a mount, an umount, a `ps`), and with a shared
//! libstdc++ the dynamic loader resolved some 2,300 symbols against it before main: about a
//! third of what a short command executed. Linked in, they are resolved once, at link time.
//! Where the compiler has no static libstdc++ the shared one is used, as before.

use std::path::Path;
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=CXX");
    let cxx = std::env::var("CXX").unwrap_or_else(|_| "c++".into());
    let found = Command::new(&cxx)
        .arg("-print-file-name=libstdc++.a")
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string());
    match found.as_deref().map(Path::new) {
        Some(p) if p.is_absolute() && p.exists() => {
            let dir = p.parent().expect("a file has a parent");
            println!("cargo:rustc-link-search=native={}", dir.display());
            println!("cargo:rustc-link-lib=static=stdc++");
        }
        _ => println!("cargo:warning=no static libstdc++ found with {cxx}: linking the shared one"),
    }
    // Relative relocations packed (DT_RELR, glibc 2.36 and binutils 2.38 on): fewer pages
    // written by the loader at every start.
    println!("cargo:rustc-link-arg-bins=-Wl,-z,pack-relative-relocs");
    // The static initializers (.text.startup), cold code (.text.unlikely) and exit code
    // (.text.exit) each kept together: RocksDB's initializers, when they run, fault in pages
    // side by side instead of one page of code in each of its object files.
    println!("cargo:rustc-link-arg-bins=-Wl,-z,keep-text-section-prefix");
    // RocksDB's ~170 static initializers build its option tables before main in every process,
    // though only a daemon that opens an inode table and the verbs that keep records use
    // RocksDB: some 2 ms of a `strata umount`. The linker script moves them to a table of
    // their own, which crate::start::rocksdb_ready() runs before the first use. Tests link
    // with it too, so they run the binary's code as it ships.
    let script =
        Path::new(&std::env::var("CARGO_MANIFEST_DIR").unwrap()).join("link/rocksdb-init.ld");
    println!("cargo:rerun-if-changed={}", script.display());
    println!("cargo:rustc-link-arg=-Wl,-T,{}", script.display());
}
