//! `strata layers`: the stack of a 3-layer mount with two grafts, drawn in the terminal and
//! as an SVG that a browser shows (headless Chromium renders it and takes a screenshot).

mod common;
use common::*;

use std::fs;
use std::path::Path;
use std::process::Command;

fn layers(m: &Mount, args: &[&std::ffi::OsStr]) -> CmdOut {
    let mut c = m.strata_cmd();
    c.arg("layers").args(args);
    let o = run_cmd(&mut c, CMD_TIMEOUT);
    assert!(o.ok(), "strata layers {args:?}: {}", o.describe());
    o
}

fn mount_with_grafts() -> (Mount, std::path::PathBuf) {
    let b = Builder::new(3)
        .lower(0, |l| {
            l.file("one", "1");
        })
        .lower(1, |l| {
            l.file("two/a", "22").file("two/b", "22");
        })
        .lower(2, |l| {
            l.file("three", "333");
        })
        .upper(|u| {
            u.file("up", "upper");
        });
    let src = b.host_dir("src");
    src.file("s", "bind");
    let m = b
        .arg("--bind")
        .arg(spec(&src.root, "/srv:ro"))
        .arg("-v")
        .arg("data:/data")
        .prepare();
    (m, src.root)
}

/// Non-blank: the PNG decodes and holds more than one colour.
fn assert_png_renders(p: &Path) {
    let dec = png::Decoder::new(std::io::BufReader::new(fs::File::open(p).unwrap()));
    let mut r = dec.read_info().expect("a PNG");
    let mut buf = vec![0; r.output_buffer_size().unwrap()];
    let info = r.next_frame(&mut buf).expect("a PNG frame");
    let px = info.line_size / info.width as usize;
    let data = &buf[..info.buffer_size()];
    let first = &data[..px];
    let differing = data.chunks(px).filter(|c| *c != first).count();
    assert!(
        differing > 1000,
        "the screenshot {} is blank ({differing} pixels differ from the first)",
        p.display()
    );
}

#[test]
fn three_layers_and_two_grafts_in_the_terminal_and_as_svg_in_chromium() {
    let (mut m, src) = mount_with_grafts();
    m.mount_now();
    let svg = m.base.join("stack.svg");
    let o = layers(&m, &[m.mnt.as_os_str(), "--svg".as_ref(), svg.as_os_str()]);
    let out = &o.stdout;
    let lines: Vec<&str> = out.lines().collect();
    assert!(lines[0].contains(m.mnt.to_str().unwrap()), "{out}");
    // Upper on top, then lower 1..3 in order, each with its path and entry count.
    let pos = |s: &str| {
        out.find(s)
            .unwrap_or_else(|| panic!("{s:?} is not in the drawing:\n{out}"))
    };
    let u = m.upper.clone().unwrap();
    let order = [
        pos("upper "),
        pos(u.to_str().unwrap()),
        pos("lower 1"),
        pos(m.lowers[0].to_str().unwrap()),
        pos("lower 2"),
        pos(m.lowers[1].to_str().unwrap()),
        pos("lower 3"),
        pos(m.lowers[2].to_str().unwrap()),
    ];
    assert!(order.windows(2).all(|w| w[0] < w[1]), "{out}");
    // lower 2 holds two/, two/a and two/b: 3 entries, 4 bytes.
    let l2 = lines.iter().find(|l| l.contains("lower 2")).unwrap();
    assert!(l2.contains("4 B") && l2.contains("3 entries"), "{l2}");
    for g in ["/srv (bind ro)", "/data (volume rw)", src.to_str().unwrap()] {
        assert!(out.contains(g), "{g:?} is not beside the stack:\n{out}");
    }
    // The SVG: every layer's name and path, and each graft's target.
    let text = fs::read_to_string(&svg).unwrap();
    assert!(text.starts_with("<svg"), "{text}");
    for s in ["upper", "lower 1", "lower 2", "lower 3", "/srv", "/data"] {
        assert!(text.contains(&format!(">{s}")), "{s:?} is not in the SVG");
    }
    for l in &m.lowers {
        assert!(text.contains(l.to_str().unwrap()));
    }
    // Headless Chromium renders it ...
    let shot = m.base.join("stack.png");
    let o = run_cmd(
        Command::new("chromium")
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--hide-scrollbars",
            ])
            .arg("--window-size=1100,420")
            .arg(format!("--screenshot={}", shot.display()))
            .arg(format!("file://{}", svg.display())),
        CMD_TIMEOUT,
    );
    assert!(
        o.ok() && shot.exists(),
        "chromium --screenshot: {}",
        o.describe()
    );
    assert_png_renders(&shot);
    // ... and a page embedding it holds the layers' names in its DOM.
    let page = m.base.join("stack.html");
    fs::write(
        &page,
        format!("<!DOCTYPE html><html><body>{text}</body></html>"),
    )
    .unwrap();
    let o = run_cmd(
        Command::new("chromium")
            .args(["--headless", "--no-sandbox", "--disable-gpu", "--dump-dom"])
            .arg(format!("file://{}", page.display())),
        CMD_TIMEOUT,
    );
    assert!(o.ok(), "chromium --dump-dom: {}", o.describe());
    for s in [
        "upper",
        "lower 1",
        "lower 2",
        "lower 3",
        "/srv (bind ro)",
        "/data (volume rw)",
    ] {
        assert!(
            o.stdout.contains(s),
            "{s:?} is not in Chromium's DOM:\n{}",
            o.stdout
        );
    }
}

#[test]
fn layers_of_something_that_is_no_mount_container_or_image_is_one_line() {
    let (m, _) = mount_with_grafts();
    let mut c = m.strata_cmd();
    c.arg("layers").arg("no-such-thing");
    let o = run_cmd(&mut c, CMD_TIMEOUT);
    assert_eq!(o.status.code(), Some(1), "{}", o.describe());
    assert_one_line_error(
        &o,
        &["no-such-thing", "no such strata mount, container or image"],
        "layers",
    );
}
