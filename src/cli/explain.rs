//! `strata explain PATH... [--mount DIR] [--json]`: parse and print (src/explain/ explains).

use std::path::{Path, PathBuf};

use anyhow::Result;

use crate::explain::path::{explain as explain_one, Explanation, Where};
use crate::explain::view::{locate, View};

fn place(w: &Where) -> String {
    let dir = w.dir.trim_end_matches('/');
    let p = if w.path == "/" {
        String::new()
    } else {
        w.path.clone()
    };
    format!("{} ({dir}{p})", w.layer)
}

fn entries(n: usize) -> String {
    if n == 1 {
        "1 entry".into()
    } else {
        format!("{n} entries")
    }
}

fn print(e: &Explanation) {
    println!("{}: {} in mount {}", e.path, e.merged_path, e.mount);
    match (&e.supplied_by, &e.kind) {
        (Some(w), Some(k)) => println!("  {k}, supplied by {}", place(w)),
        _ => println!("  not visible in the mount"),
    }
    if let Some(g) = &e.graft {
        let what = if g.init_file {
            "generated init file".to_string()
        } else {
            format!("{} graft", g.kind)
        };
        let vol = g
            .volume
            .as_ref()
            .map(|v| format!(" volume {v},"))
            .unwrap_or_default();
        println!(
            "  {what} at {}:{vol} source {} ({})",
            g.target, g.source, g.mode
        );
    }
    if let Some(r) = &e.redirect {
        println!("  redirect: {r}");
    }
    if let Some(c) = &e.copy_up {
        println!("  {c}");
    }
    if let Some(i) = &e.inode {
        println!("  st_ino {}: {}", i.st_ino, i.how);
    }
    if !e.merged.is_empty() {
        println!("  merged from:");
        for m in &e.merged {
            println!(
                "    {}: {} of its own, {} shown from it",
                place(&m.at),
                entries(m.entries),
                m.shown
            );
        }
    }
    if !e.hidden.is_empty() {
        println!(
            "  {}:",
            if e.visible {
                "also in"
            } else {
                "hidden; it is in"
            }
        );
        for h in &e.hidden {
            let why = match &h.by {
                Some(c) => match &c.format {
                    Some(f) => format!("{} [{f}]", c.detail),
                    None => c.detail.clone(),
                },
                None => "not reached by the lookup".into(),
            };
            println!("    {} ({}): {why}", place(&h.at), h.kind);
        }
    }
}

pub fn explain(paths: &[PathBuf], mount: Option<&Path>, json: bool) -> Result<()> {
    let mut out = Vec::new();
    let mut failed = Vec::new();
    let mut views: Vec<View> = Vec::new();
    for p in paths {
        let r = locate(p, mount).and_then(|(mp, rel)| {
            let i = match views.iter().position(|v| v.rec.mountpoint == mp) {
                Some(i) => i,
                None => {
                    views.push(View::open(&mp)?);
                    views.len() - 1
                }
            };
            explain_one(&views[i], p, &rel)
        });
        match r {
            Ok(e) => {
                if !json {
                    print(&e);
                }
                out.push(e);
            }
            Err(e) => {
                eprintln!("strata: {}", format!("{e:#}").replace('\n', " "));
                failed.push(p.display().to_string());
            }
        }
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&out)?);
    }
    match failed.len() {
        0 => Ok(()),
        _ => std::process::exit(1),
    }
}
