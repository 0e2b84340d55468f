//! The stack of `strata layers` as a self-contained SVG (no fonts, images or scripts from
//! elsewhere): the merged view on top, the upper and each lower below it, grafts at the side
//! with their targets, as the chapters on container filesystems draw it.

use std::fmt::Write;

use super::stack::{human, Stack};

fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&apos;"),
            c => o.push(c),
        }
    }
    o
}

const ROW: i64 = 64;
const TOP: i64 = 60;
const STACK_W: i64 = 560;
const GRAFT_X: i64 = 640;
const GRAFT_W: i64 = 420;

pub fn render(s: &Stack) -> String {
    let rows = s.layers.len() as i64 + 1;
    let graft_rows = s.grafts.len() as i64;
    let height = TOP + ROW * rows.max(graft_rows + 1) + 30;
    let width = if s.grafts.is_empty() {
        STACK_W + 40
    } else {
        GRAFT_X + GRAFT_W + 20
    };
    let mut o = String::new();
    let _ = writeln!(
        o,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}" font-family="sans-serif">"#
    );
    let _ = writeln!(o, r##"<rect width="100%" height="100%" fill="#ffffff"/>"##);
    let _ = writeln!(
        o,
        r##"<text x="20" y="34" font-size="20" font-weight="bold" fill="#222">{}</text>"##,
        esc(&s.title)
    );
    // The merged view, then each layer, top-most first.
    let _ = writeln!(
        o,
        r##"<rect x="20" y="{TOP}" width="{STACK_W}" height="{}" rx="6" fill="#f3f3f3" stroke="#555" stroke-dasharray="6 4"/>"##,
        ROW - 10
    );
    let _ = writeln!(
        o,
        r##"<text x="36" y="{}" font-size="16" fill="#333">merged view (what the mount shows)</text>"##,
        TOP + 32
    );
    for (i, l) in s.layers.iter().enumerate() {
        let y = TOP + ROW * (i as i64 + 1);
        let fill = if l.name == "upper" {
            "#ffe7b3"
        } else {
            "#cfe3ff"
        };
        let _ = writeln!(
            o,
            r##"<rect x="20" y="{y}" width="{STACK_W}" height="{}" rx="6" fill="{fill}" stroke="#345"/>"##,
            ROW - 10
        );
        let _ = writeln!(
            o,
            r##"<text x="36" y="{}" font-size="16" font-weight="bold" fill="#123">{}</text>"##,
            y + 22,
            esc(&l.name)
        );
        let _ = writeln!(
            o,
            r##"<text x="140" y="{}" font-size="13" fill="#123">{} · {} entries</text>"##,
            y + 22,
            esc(&human(l.size)),
            l.entries
        );
        let _ = writeln!(
            o,
            r##"<text x="36" y="{}" font-size="12" fill="#345">{}</text>"##,
            y + 42,
            esc(&l.path)
        );
    }
    for (i, g) in s.grafts.iter().enumerate() {
        let y = TOP + ROW * i as i64;
        let _ = writeln!(
            o,
            r##"<rect x="{GRAFT_X}" y="{y}" width="{GRAFT_W}" height="{}" rx="6" fill="#d9f2d9" stroke="#363"/>"##,
            ROW - 10
        );
        let _ = writeln!(
            o,
            r##"<text x="{}" y="{}" font-size="15" font-weight="bold" fill="#131">{} ({} {})</text>"##,
            GRAFT_X + 14,
            y + 22,
            esc(&g.target),
            esc(&g.kind),
            esc(&g.mode)
        );
        let _ = writeln!(
            o,
            r##"<text x="{}" y="{}" font-size="12" fill="#242">{}</text>"##,
            GRAFT_X + 14,
            y + 42,
            esc(&g.source)
        );
        let ay = y + (ROW - 10) / 2;
        let _ = writeln!(
            o,
            r##"<line x1="{GRAFT_X}" y1="{ay}" x2="{}" y2="{}" stroke="#363" stroke-width="2"/>"##,
            20 + STACK_W + 4,
            TOP + (ROW - 10) / 2
        );
    }
    o.push_str("</svg>\n");
    o
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::explain::stack::{StackGraft, StackLayer};

    #[test]
    fn names_are_escaped_and_all_drawn() {
        let s = Stack {
            title: "mount /m<1>".into(),
            layers: vec![StackLayer {
                name: "upper".into(),
                path: "/a&b".into(),
                size: 2048,
                entries: 3,
            }],
            grafts: vec![StackGraft {
                target: "/data".into(),
                kind: "volume".into(),
                source: "v1".into(),
                mode: "rw".into(),
            }],
        };
        let svg = render(&s);
        assert!(
            svg.contains("mount /m&lt;1&gt;") && svg.contains("/a&amp;b"),
            "{svg}"
        );
        assert!(
            svg.contains(">upper<") && svg.contains("/data (volume rw)"),
            "{svg}"
        );
        assert!(svg.contains("2.0 KiB · 3 entries"), "{svg}");
    }
}
