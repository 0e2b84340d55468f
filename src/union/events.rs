//! What the union does that a student may watch (`strata trace`): copy-ups, whiteouts, opaque
//! directories, redirects, creates, removals, renames and writes into grafts.
//!
//! The union only hands events to a `Sink` that whoever serves it plugs in; it knows nothing of
//! sockets or subscribers. With no sink, or a sink that says nobody listens, an event site costs
//! one atomic load and builds nothing. A sink must never block: the union calls it with the
//! namespace lock held.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

use serde::{Deserialize, Serialize};

/// One event, as `strata trace --json` prints it (`event` names the kind).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "kebab-case")]
pub enum Event {
    /// An entry copied from a lower layer into the upper before its first change.
    CopyUp {
        path: String,
        kind: String,
        /// The lower layer it came from (1 = top-most lower) and its path there.
        layer: usize,
        source: String,
        /// Bytes of data copied (0 for a directory, a symlink, or an open with O_TRUNC).
        bytes: u64,
        micros: u64,
    },
    /// A whiteout written in the upper, hiding a lower entry.
    Whiteout {
        path: String,
        kind: String,
        /// "char device 0:0" or ".wh. file".
        format: String,
        /// "unlink", "rmdir" or "rename".
        cause: String,
    },
    /// A directory made opaque: nothing below it shows through.
    Opaque {
        path: String,
        /// The xattr that marks it.
        format: String,
        reason: String,
    },
    /// A directory with lower layers renamed: it keeps finding them at `origin`.
    Redirect {
        path: String,
        from: String,
        origin: String,
    },
    /// A change inside a graft (bind, volume, tmpfs): it goes to the graft's source.
    GraftWrite {
        path: String,
        /// "open for writing", "create file", "unlink", "rename to /x", ...
        op: String,
        source: String,
    },
    /// A new entry in the upper.
    Create {
        path: String,
        kind: String,
    },
    Unlink {
        path: String,
    },
    Rmdir {
        path: String,
    },
    Rename {
        from: String,
        to: String,
    },
    /// Events a slow reader missed (the daemon never waits for one).
    Dropped {
        count: u64,
    },
}

/// Where events go. Called with locks held: it must return at once.
pub trait Sink: Send + Sync {
    fn send(&self, e: Event);
}

/// A graft's place in the merged tree, so its events name merged paths.
#[derive(Clone, Debug)]
pub struct GraftOrigin {
    /// The graft's mountpoint, from the merged root ("/data").
    pub target: PathBuf,
    /// A single-file graft: the file's name in its union's root, which stands at `target`.
    pub file: Option<OsString>,
    /// What to call the source: "volume v1 (/var/lib/strata/volumes/v1/_data)", "bind /src".
    pub source: String,
}

/// A union's connection to a sink: set once, read at every event site.
#[derive(Default)]
pub struct Events {
    sink: OnceLock<(Arc<AtomicBool>, Arc<dyn Sink>)>,
    graft: OnceLock<GraftOrigin>,
}

impl Events {
    /// Plug in `sink`; events are built only while `listening` is true.
    pub fn connect(&self, listening: Arc<AtomicBool>, sink: Arc<dyn Sink>) {
        let _ = self.sink.set((listening, sink));
    }

    pub fn set_graft(&self, g: GraftOrigin) {
        let _ = self.graft.set(g);
    }

    /// Is anyone listening? The one check every event site makes first.
    #[inline]
    pub fn on(&self) -> bool {
        match self.sink.get() {
            Some((l, _)) => l.load(Ordering::Relaxed),
            None => false,
        }
    }

    /// Send the event `make` builds, if anyone listens. A union serving a graft reports every
    /// change as a write into the graft, named by its merged path.
    pub fn emit(&self, make: impl FnOnce(&dyn Fn(&Path) -> String) -> Event) {
        let Some((l, sink)) = self.sink.get() else {
            return;
        };
        if !l.load(Ordering::Relaxed) {
            return;
        }
        let graft = self.graft.get();
        let name = |p: &Path| merged(graft, p);
        let e = make(&name);
        let e = match graft {
            None => e,
            Some(g) => as_graft_write(e, g),
        };
        sink.send(e);
    }
}

/// The merged path of `p` (relative to a union's root).
fn merged(graft: Option<&GraftOrigin>, p: &Path) -> String {
    let p = p.strip_prefix("/").unwrap_or(p);
    match graft {
        None => format!("/{}", p.display()),
        Some(g) => {
            let rel = match &g.file {
                Some(f) => p.strip_prefix(f).unwrap_or(p),
                None => p,
            };
            let full = if rel.as_os_str().is_empty() {
                g.target.clone()
            } else {
                g.target.join(rel)
            };
            format!("/{}", full.strip_prefix("/").unwrap_or(&full).display())
        }
    }
}

fn as_graft_write(e: Event, g: &GraftOrigin) -> Event {
    let (path, op) = match e {
        Event::Create { path, kind } => (path, format!("create {kind}")),
        Event::Unlink { path } => (path, "unlink".into()),
        Event::Rmdir { path } => (path, "rmdir".into()),
        Event::Rename { from, to } => (from, format!("rename to {to}")),
        Event::GraftWrite { path, op, .. } => (path, op),
        other => return other,
    };
    Event::GraftWrite {
        path,
        op,
        source: g.source.clone(),
    }
}

impl Event {
    /// The one line `strata trace` prints.
    pub fn line(&self) -> String {
        match self {
            Event::CopyUp {
                path,
                kind,
                layer,
                source,
                bytes,
                micros,
            } => format!(
                "copy-up   {path}: {kind} from lower layer {layer} ({source}), {bytes} bytes in {:.3} ms",
                *micros as f64 / 1000.0
            ),
            Event::Whiteout {
                path,
                kind,
                format,
                cause,
            } => format!("whiteout  {path}: hides the lower {kind} ({format}, by {cause})"),
            Event::Opaque {
                path,
                format,
                reason,
            } => format!("opaque    {path}: {reason} ({format})"),
            Event::Redirect { path, from, origin } => {
                format!("redirect  {path}: renamed from {from}; lower layers stay at {origin}")
            }
            Event::GraftWrite { path, op, source } => {
                format!("graft     {path}: {op} (in {source})")
            }
            Event::Create { path, kind } => format!("create    {path}: {kind} in the upper"),
            Event::Unlink { path } => format!("unlink    {path}"),
            Event::Rmdir { path } => format!("rmdir     {path}"),
            Event::Rename { from, to } => format!("rename    {from} -> {to}"),
            Event::Dropped { count } => {
                format!("dropped   {count} events dropped (the reader was too slow)")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    struct Keep(Mutex<Vec<Event>>);
    impl Sink for Keep {
        fn send(&self, e: Event) {
            self.0.lock().unwrap().push(e);
        }
    }

    #[test]
    fn nothing_is_built_while_nobody_listens() {
        let ev = Events::default();
        let on = Arc::new(AtomicBool::new(false));
        let keep = Arc::new(Keep(Mutex::new(Vec::new())));
        ev.connect(on.clone(), keep.clone());
        ev.emit(|_| panic!("built with nobody listening"));
        on.store(true, Ordering::Relaxed);
        ev.emit(|n| Event::Unlink {
            path: n(Path::new("a/b")),
        });
        assert_eq!(
            *keep.0.lock().unwrap(),
            vec![Event::Unlink {
                path: "/a/b".into()
            }]
        );
    }

    #[test]
    fn a_graft_reports_merged_paths_as_graft_writes() {
        let ev = Events::default();
        let keep = Arc::new(Keep(Mutex::new(Vec::new())));
        ev.connect(Arc::new(AtomicBool::new(true)), keep.clone());
        ev.set_graft(GraftOrigin {
            target: "/data".into(),
            file: None,
            source: "bind /src".into(),
        });
        ev.emit(|n| Event::Create {
            path: n(Path::new("x")),
            kind: "file".into(),
        });
        let got = keep.0.lock().unwrap()[0].clone();
        assert_eq!(
            got,
            Event::GraftWrite {
                path: "/data/x".into(),
                op: "create file".into(),
                source: "bind /src".into()
            }
        );
        assert_eq!(got.line(), "graft     /data/x: create file (in bind /src)");
    }
}
