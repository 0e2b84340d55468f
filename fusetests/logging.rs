//! `RUST_LOG=strata=info` logs each copy-up, whiteout and redirect as one readable line
//! (`strata mount --log FILE` writes the daemon's log to FILE).

mod common;
use common::*;

fn find_line<'a>(log: &'a str, keyword: &str, name: &str) -> Option<&'a str> {
    log.lines()
        .find(|l| l.to_lowercase().contains(keyword) && l.contains(name))
}

#[test]
fn info_log_shows_copy_ups_whiteouts_and_redirects() {
    let mut m = Builder::new(1)
        .log()
        .env("RUST_LOG", "strata=info")
        .lower(0, |l| {
            l.file("copyme-7f3a", "data");
            l.file("deleteme-91bc", "data");
            l.file("dirA-5d2e/inside", "x");
        })
        .mount();
    m.run(|c| {
        append(c.p("copyme-7f3a"), "+");
        rm(c.p("deleteme-91bc"));
        rename(c.p("dirA-5d2e"), c.p("dirB-5d2e"));
        assert_eq!(read(c.p("dirB-5d2e/inside")), "x");
    });
    m.unmount();
    let log = m.read_log();
    assert!(
        !log.trim().is_empty(),
        "the log file {} is empty",
        m.log.as_ref().unwrap().display()
    );
    let mut missing = Vec::new();
    if find_line(&log, "copy", "copyme-7f3a").is_none() {
        missing.push("a copy-up line naming copyme-7f3a");
    }
    if find_line(&log, "whiteout", "deleteme-91bc").is_none() {
        missing.push("a whiteout line naming deleteme-91bc");
    }
    if find_line(&log, "redirect", "dirB-5d2e").is_none()
        && find_line(&log, "redirect", "dirA-5d2e").is_none()
    {
        missing.push("a redirect line naming dirA-5d2e or dirB-5d2e");
    }
    assert!(
        missing.is_empty(),
        "the info log lacks {missing:?}; log:\n{log}"
    );
    // Info level is for people: no per-request debug lines.
    let lines = log.lines().count();
    assert!(
        lines < 100,
        "RUST_LOG=strata=info wrote {lines} lines for a handful of operations:\n{log}"
    );
}

#[test]
fn without_rust_log_the_log_has_no_copy_up_lines() {
    // The log level is the user's choice: with RUST_LOG=strata=warn, copy-ups are not logged.
    let mut m = Builder::new(1)
        .log()
        .env("RUST_LOG", "strata=warn")
        .lower(0, |l| {
            l.file("copyme-c41d", "data");
        })
        .mount();
    m.run(|c| append(c.p("copyme-c41d"), "+"));
    m.unmount();
    let log = m.read_log();
    assert!(
        find_line(&log, "copy", "copyme-c41d").is_none(),
        "copy-up logged at warn level:\n{log}"
    );
}

const DEBUG_SCRIPT: &str = r#"
set -u
S="$1"; B="$2"; M="$B/mnt"; H="$B/home"
"$S" mount -d --log "$H/debug.log" -o "lowerdir=$B/lower0,upperdir=$B/upper,workdir=$B/work" "$M" >"$H/fg.out" 2>&1 &
i=0
until mountpoint -q "$M"; do
  i=$((i+1)); if [ $i -gt 300 ]; then echo "NOT MOUNTED"; cat "$H/fg.out"; exit 1; fi; sleep 0.1
done
/usr/bin/python3 - "$M" <<'PY'
import os, sys
m = sys.argv[1]
fd = os.open(m + "/written-5c1e", os.O_CREAT | os.O_WRONLY, 0o644)
os.write(fd, b"payload")
os.fsync(fd)
os.close(fd)
fd = os.open(m + "/readme-5c1e", os.O_RDONLY)
print("READ", os.read(fd, 100).decode().strip())
os.close(fd)
os.setxattr(m + "/written-5c1e", "user.k5c1e", b"v")
print("XATTR", os.getxattr(m + "/written-5c1e", "user.k5c1e").decode())
print("LIST", sorted(os.listdir(m)))
PY
"$S" umount "$M"
wait
echo "DONE"
"#;

/// `-d` logs every request the daemon gets, data and xattr requests included. (Run
/// unprivileged: a root mount passes reads and writes through to the upper's file in the
/// kernel, so they never reach the daemon.)
#[test]
fn debug_log_shows_reads_writes_xattrs_and_fsync() {
    assert!(
        is_root(),
        "this test starts as root and drops to {TEST_USER}"
    );
    let m = Builder::new(1)
        .lower(0, |l| {
            l.file("readme-5c1e", "lower data\n");
        })
        .owned_by_test_user()
        .prepare();
    let strata = strata_bin();
    let out = run_script_as_test_user(
        &m.base,
        DEBUG_SCRIPT,
        &[strata.as_os_str(), m.base.as_os_str()],
    );
    assert!(
        out.stdout.contains("READ lower data") && out.stdout.contains("XATTR v"),
        "{}",
        out.describe()
    );
    let log = std::fs::read_to_string(m.base.join("home/debug.log")).unwrap_or_default();
    let has = |op: &str, also: &str| {
        log.lines()
            .any(|l| l.contains(&format!("] {op} ")) && l.contains(also))
    };
    let mut missing = Vec::new();
    for (op, also) in [
        ("write", ""),
        ("read", ""),
        ("fsync", ""),
        ("setxattr", "user.k5c1e"),
        ("getxattr", "user.k5c1e"),
        ("release", ""),
    ] {
        if !has(op, also) {
            missing.push(op);
        }
    }
    if !has("readdir", "") && !has("readdirplus", "") {
        missing.push("readdir");
    }
    assert!(
        missing.is_empty(),
        "the -d log has no line for {missing:?}:\n{log}"
    );
}
