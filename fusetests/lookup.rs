//! Lookup through the layers: top-most wins, directories merge, whiteouts and opaque directories
//! (both formats in every lower; the upper in the mount's format) stop the search, and `.wh.*`
//! markers and private overlay xattrs never show through the mount.

mod common;
use common::*;
use std::process::Command;

#[test]
fn topmost_layer_wins_and_directories_merge() {
    let m = Builder::new(3)
        .upper(|u| {
            u.file("m/u", "upper");
            u.file("same2", "upper version");
        })
        .lower(0, |l| {
            l.file("same", "top");
            l.file("same2", "l0 version");
            l.file("m/l0", "l0");
        })
        .lower(1, |l| {
            l.file("same", "middle");
            l.file("m/l1", "l1");
            l.file("m/deep/inner", "l1 deep");
        })
        .lower(2, |l| {
            l.file("same", "bottom");
            l.file("m/l2", "l2");
            l.file("m/deep/inner2", "l2 deep");
            l.file("only_bottom", "b");
        })
        .mount();
    m.run(|c| {
        assert_eq!(read(c.p("same")), "top", "the top-most lower must win");
        assert_eq!(
            read(c.p("same2")),
            "upper version",
            "the upper must win over every lower"
        );
        assert_eq!(read(c.p("only_bottom")), "b");
        assert_eq!(names(c.p("")), set(&["m", "same", "same2", "only_bottom"]));
        assert_eq!(names(c.p("m")), set(&["u", "l0", "l1", "l2", "deep"]));
        assert_eq!(names(c.p("m/deep")), set(&["inner", "inner2"]));
        for (n, want) in [
            ("m/u", "upper"),
            ("m/l0", "l0"),
            ("m/l1", "l1"),
            ("m/l2", "l2"),
            ("m/deep/inner2", "l2 deep"),
        ] {
            assert_eq!(read(c.p(n)), want, "{n}");
        }
        assert!(lstat(c.p("m")).is_dir());
        assert_enoent(c.p("nope"));
        assert_enoent(c.p("m/nope"));
    });
}

#[test]
fn a_non_directory_ends_the_merge() {
    // lower0 dir s/ over lower1 file s over lower2 dir s/: only lower0's s/ is seen (as in
    // overlayfs, a non-directory stops the search below a directory).
    let m = Builder::new(3)
        .upper(|u| {
            u.file("t/a", "upper t/a");
        })
        .lower(0, |l| {
            l.file("s/x", "x");
            l.file("t", "lower file t");
            l.file("v", "file v");
        })
        .lower(1, |l| {
            l.file("s", "file s");
            l.file("v/below", "dir v");
        })
        .lower(2, |l| {
            l.file("s/y", "y");
            l.file("t/b", "lower t/b");
        })
        .mount();
    m.run(|c| {
        assert_eq!(
            names(c.p("s")),
            set(&["x"]),
            "s/ must not merge through lower1's file s"
        );
        assert_enoent(c.p("s/y"));
        assert_eq!(
            names(c.p("t")),
            set(&["a"]),
            "upper dir t/ over a lower file t is not merged"
        );
        assert_enoent(c.p("t/b"));
        assert!(lstat(c.p("v")).is_file());
        assert_eq!(read(c.p("v")), "file v");
    });
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Where {
    Upper,
    Lower(usize),
}

#[derive(Clone, Copy, Debug)]
enum Fmt {
    Kernel,
    Oci,
}

fn layer_of(b: Builder, w: Where, f: impl FnOnce(&Layer)) -> Builder {
    match w {
        Where::Upper => b.upper(f),
        Where::Lower(i) => b.lower(i, f),
    }
}

/// Layers strictly above / below `w` in a 3-lower fixture.
fn above_below(w: Where) -> (Vec<Where>, Vec<Where>) {
    let all = [
        Where::Upper,
        Where::Lower(0),
        Where::Lower(1),
        Where::Lower(2),
    ];
    let pos = all.iter().position(|x| *x == w).unwrap();
    (all[..pos].to_vec(), all[pos + 1..].to_vec())
}

/// The whiteout formats a layer is read in: both in a lower; in the upper, the mount's own
/// (the kernel's as root, where `.wh.` names are plain names: see options_formats.rs).
fn formats_of(w: Where) -> Vec<Fmt> {
    if w == Where::Upper && is_root() {
        vec![Fmt::Kernel]
    } else {
        vec![Fmt::Kernel, Fmt::Oci]
    }
}

#[test]
fn whiteouts_in_every_layer_and_both_formats_hide_what_is_below() {
    let mut f = Failures::default();
    for w in [Where::Upper, Where::Lower(0), Where::Lower(1)] {
        for fmt in formats_of(w) {
            f.case(&format!("whiteout in {w:?}, {fmt:?} format"), || {
                let (above, below) = above_below(w);
                let mut b = Builder::new(3);
                for l in &below {
                    b = layer_of(b, *l, |l| {
                        l.file("victim", "should be hidden");
                        l.file("victim_dir/inner", "should be hidden");
                        l.file("revived", "below");
                        l.file("keep", "keep");
                    });
                }
                b = layer_of(b, w, |l| {
                    match fmt {
                        Fmt::Kernel => l
                            .whiteout("victim")
                            .whiteout("victim_dir")
                            .whiteout("revived"),
                        Fmt::Oci => l
                            .whiteout_oci("victim")
                            .whiteout_oci("victim_dir")
                            .whiteout_oci("revived"),
                    };
                    l.file("sibling", "sibling");
                });
                for l in &above {
                    b = layer_of(b, *l, |l| {
                        l.file("revived", "above");
                    });
                }
                let m = b.mount();
                let has_above = !above.is_empty();
                m.run(move |c| {
                    assert_enoent(c.p("victim"));
                    assert_enoent(c.p("victim_dir"));
                    assert_enoent(c.p("victim_dir/inner"));
                    let mut want = set(&["keep", "sibling"]);
                    if has_above {
                        want.insert("revived".into());
                        assert_eq!(
                            read(c.p("revived")),
                            "above",
                            "an entry above the whiteout stays visible"
                        );
                    } else {
                        assert_enoent(c.p("revived"));
                    }
                    assert_eq!(names(c.p("")), want, "readdir of the root");
                    assert_eq!(read(c.p("keep")), "keep");
                    // Checked last: the names of whiteout files can't be looked up either.
                    assert_enoent(c.p(".wh.victim"));
                    assert_enoent(c.p(".wh.victim_dir"));
                });
            });
        }
    }
    f.check();
}

#[test]
fn opaque_directories_in_every_layer_and_both_formats() {
    let mut f = Failures::default();
    for w in [Where::Upper, Where::Lower(0), Where::Lower(1)] {
        for fmt in formats_of(w) {
            f.case(&format!("opaque dir in {w:?}, {fmt:?} format"), || {
                let (above, below) = above_below(w);
                let mut b = Builder::new(3);
                for l in &below {
                    b = layer_of(b, *l, |l| {
                        l.file("od/below", "hidden");
                        l.file("od/mine", "hidden version");
                        l.file("od/sub/deep", "hidden");
                        l.file("plain/below", "visible");
                    });
                }
                b = layer_of(b, w, |l| {
                    match fmt {
                        Fmt::Kernel => l.opaque("od"),
                        Fmt::Oci => l.opaque_oci("od"),
                    };
                    l.file("od/mine", "opaque layer version");
                    l.file("plain/mid", "visible");
                });
                for l in &above {
                    b = layer_of(b, *l, |l| {
                        l.file("od/above", "above");
                    });
                }
                let m = b.mount();
                let (has_above, has_below) = (!above.is_empty(), !below.is_empty());
                m.run(move |c| {
                    let mut want = set(&["mine"]);
                    if has_above {
                        want.insert("above".into());
                    }
                    assert_eq!(names(c.p("od")), want, "readdir of the opaque dir");
                    assert_eq!(read(c.p("od/mine")), "opaque layer version");
                    assert_enoent(c.p("od/below"));
                    assert_enoent(c.p("od/sub"));
                    assert_no_private_xattrs(&c.p("od"));
                    let mut plain = set(&["mid"]);
                    if has_below {
                        plain.insert("below".into());
                    }
                    assert_eq!(
                        names(c.p("plain")),
                        plain,
                        "a non-opaque sibling dir still merges"
                    );
                    // Checked last: the opaque marker file can't be looked up either.
                    assert_enoent(c.p("od/.wh..wh..opq"));
                });
            });
        }
    }
    f.check();
}

#[test]
fn whiteout_files_are_never_listed_or_reachable() {
    let m = Builder::new(2)
        .upper(|u| {
            // The upper in the mount's format: `.wh.` files are whiteouts only unprivileged.
            if is_root() {
                u.whiteout("gone_up")
                    .file("d/keep", "k")
                    .whiteout("d/gone_in_d");
            } else {
                u.whiteout_oci("gone_up")
                    .file("d/keep", "k")
                    .whiteout_oci("d/gone_in_d");
            }
        })
        .lower(0, |l| {
            l.whiteout_oci("gone").whiteout_oci("never_existed");
            l.opaque_oci("o").file("o/x", "x");
            l.file("gone_up", "hidden by the upper");
            l.file("d/gone_in_d", "hidden");
        })
        .lower(1, |l| {
            l.file("gone", "hidden");
            l.file("o/y", "hidden");
            l.file("d/lower1", "l1");
        })
        .mount();
    m.run(|c| {
        for dir in ["", "d", "o"] {
            for n in names(c.p(dir)) {
                assert!(!n.starts_with(".wh."), "readdir of /{dir} shows {n}");
            }
        }
        assert_eq!(names(c.p("")), set(&["d", "o"]));
        assert_eq!(names(c.p("d")), set(&["keep", "lower1"]));
        assert_eq!(names(c.p("o")), set(&["x"]));
        for p in [
            ".wh.gone",
            ".wh.never_existed",
            ".wh.gone_up",
            "o/.wh..wh..opq",
            "d/.wh.gone_in_d",
        ] {
            assert_enoent(c.p(p));
        }
        assert_enoent(c.p("never_existed"));
    });
}

#[test]
fn private_overlay_xattrs_are_hidden() {
    let m = Builder::new(2)
        .upper(|u| {
            u.opaque("op").xattr("op", "user.visible", b"1");
            u.file("op/f", "f");
        })
        .lower(0, |l| {
            l.file("f", "f")
                .xattr("f", &ovl_xattr("origin"), b"junk")
                .xattr("f", "user.visible", b"2");
            l.dir("redir")
                .redirect("redir", "/elsewhere")
                .xattr("redir", "user.visible", b"3");
            l.file("redir/a", "a");
        })
        .lower(1, |l| {
            l.file("op/hidden", "h");
        })
        .mount();
    m.run(|c| {
        for p in ["op", "f", "redir", ""] {
            assert_no_private_xattrs(&c.p(p));
        }
        assert_eq!(
            llistxattr(&c.p("op")).unwrap(),
            vec!["user.visible".to_string()]
        );
        assert_eq!(
            llistxattr(&c.p("f")).unwrap(),
            vec!["user.visible".to_string()]
        );
        assert_eq!(lgetxattr(&c.p("f"), "user.visible").unwrap(), b"2");
        assert_errno_in(
            lgetxattr(&c.p("f"), &ovl_xattr("origin")),
            &[libc::ENODATA, libc::EOPNOTSUPP],
            "getxattr of a private xattr",
        );
        assert_eq!(names(c.p("op")), set(&["f"]));
    });
}

#[test]
fn redirects_in_lower_layers_are_followed() {
    // lower0 is what kernel overlayfs leaves in an upper after `mv orig moved` and
    // `mv a/orig2 b/moved2`: a redirect xattr on the new dir and a whiteout at the old name.
    let m = Builder::new(2)
        .lower(0, |l| {
            l.dir("moved").redirect("moved", "orig").whiteout("orig");
            l.file("moved/added", "added after the rename");
            l.dir("b/moved2")
                .redirect("b/moved2", "/a/orig2")
                .whiteout("a/orig2");
        })
        .lower(1, |l| {
            l.file("orig/f", "f");
            l.file("orig/sub/g", "g");
            l.file("a/orig2/h", "h");
            l.file("a/other", "other");
        })
        .mount();
    m.run(|c| {
        assert_eq!(names(c.p("")), set(&["moved", "b", "a"]));
        assert_eq!(names(c.p("moved")), set(&["f", "sub", "added"]));
        assert_eq!(read(c.p("moved/f")), "f");
        assert_eq!(read(c.p("moved/sub/g")), "g");
        assert_eq!(names(c.p("b/moved2")), set(&["h"]));
        assert_eq!(read(c.p("b/moved2/h")), "h");
        assert_eq!(names(c.p("a")), set(&["other"]));
        assert_no_private_xattrs(&c.p("moved"));
        // And it keeps working through a copy-up below the redirected dir.
        append(c.p("moved/sub/g"), "+");
        assert_eq!(read(c.u("moved/sub/g")), "g+");
        assert_eq!(read(c.p("moved/sub/g")), "g+");
    });
}

/// Lookups the daemon answered for names in directory `dir` of the mount, from its debug log.
fn lookups_in(log: &str, names: &[String]) -> usize {
    log.lines()
        .filter(|l| l.contains("] lookup "))
        .filter(|l| names.iter().any(|n| l.ends_with(&format!(" {n:?}"))))
        .count()
}

/// `ls -l` asks for a directory's ACL and then stats every entry it lists: its listing comes
/// with attributes (READDIRPLUS), so the kernel asks for no entry again. (`find`, which needs
/// names and types only, still gets plain listings: see fuse/ `readdirplus`.)
#[test]
fn ls_l_gets_attributes_with_the_listing() {
    let names: Vec<String> = (0..60).map(|i| format!("entry{i:02}")).collect();
    let n2 = names.clone();
    let mut m = Builder::new(1)
        .lower(0, move |l| {
            for n in &n2 {
                l.file(&format!("d/{n}"), "x");
            }
        })
        .log()
        .env("RUST_LOG", "strata=debug")
        .mount();
    let p = m.mnt.clone();
    let out = run_cmd(Command::new("ls").arg("-l").arg(p.join("d")), CMD_TIMEOUT);
    assert!(out.ok(), "{}", out.describe());
    assert_eq!(
        out.stdout.lines().filter(|l| l.contains("entry")).count(),
        60
    );
    m.unmount();
    let log = m.read_log();
    assert_eq!(
        lookups_in(&log, &names),
        0,
        "ls -l looked its entries up one by one:\n{log}"
    );
    assert!(
        log.lines().any(|l| l.contains("] readdirplus ")),
        "no READDIRPLUS at all:\n{log}"
    );
}
