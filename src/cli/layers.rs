//! `strata layers MOUNT|CONTAINER|IMAGE [--svg FILE]`: the stack drawn in the terminal, upper
//! on top, grafts at the side; with --svg, the same picture written as an SVG.

use std::path::Path;

use anyhow::{Context, Result};

use crate::explain::stack::{self, human, Stack};
use crate::explain::svg;
use crate::state::Root;

fn draw(s: &Stack) -> Vec<String> {
    let body: Vec<(String, String)> = s
        .layers
        .iter()
        .map(|l| {
            (
                format!(
                    "{:<8} {:>10}  {:>6} entries",
                    l.name,
                    human(l.size),
                    l.entries
                ),
                format!("         {}", l.path),
            )
        })
        .collect();
    let head = "merged view".to_string();
    let w = body
        .iter()
        .flat_map(|(a, b)| [a.chars().count(), b.chars().count()])
        .chain([head.len()])
        .max()
        .unwrap_or(0);
    let line = |t: &str| format!("│ {t:<w$} │");
    let mut left = vec![format!("┌{}┐", "─".repeat(w + 2)), line(&head)];
    for (a, b) in &body {
        left.push(format!("├{}┤", "─".repeat(w + 2)));
        left.push(line(a));
        left.push(line(b));
    }
    left.push(format!("└{}┘", "─".repeat(w + 2)));
    // Grafts at the side of the merged view, each pointing into it.
    let side: Vec<String> = s
        .grafts
        .iter()
        .map(|g| format!("◀── {} ({} {}) from {}", g.target, g.kind, g.mode, g.source))
        .collect();
    let mut out = vec![s.title.clone()];
    for (i, l) in left.iter().enumerate() {
        match i.checked_sub(1).and_then(|k| side.get(k)) {
            Some(g) => out.push(format!("{l}  {g}")),
            None => out.push(l.clone()),
        }
    }
    let pad = " ".repeat(w + 4);
    for g in side.iter().skip(left.len().saturating_sub(1)) {
        out.push(format!("{pad}  {g}"));
    }
    out
}

pub fn layers(root: &Root, what: &str, svg_file: Option<&Path>) -> Result<()> {
    let s = stack::of(root, what)?;
    if let Some(f) = svg_file {
        std::fs::write(f, svg::render(&s)).with_context(|| format!("--svg {}", f.display()))?;
    }
    for l in draw(&s) {
        println!("{l}");
    }
    Ok(())
}
