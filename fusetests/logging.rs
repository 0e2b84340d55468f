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
