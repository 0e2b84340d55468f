//! The copy's source side: an entry and, for a directory, everything beneath it, walked from
//! fds without following a symlink (each child opened O_PATH|O_NOFOLLOW from its parent's fd,
//! and what that fd is decides how it is read), handed to a [`Sink`] one [`Item`] at a time.
//! [`TarSink`] writes them as a tar stream (`cp C:PATH -`); the unpacker writes them into a
//! directory.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::io::{self, Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;

use anyhow::{Context, Result};

use super::tree::{self, Found};
use crate::sys;

#[derive(Clone, Debug)]
pub enum Kind {
    Dir,
    File {
        size: u64,
    },
    Symlink(Vec<u8>),
    /// A hard link to an entry already given (its path, as given).
    Link(String),
    Char(u64),
    Block(u64),
    Fifo,
}

/// One entry of the copy: its path ("/"-separated, the copy's top first), kind and metadata.
#[derive(Clone, Debug)]
pub struct Item {
    pub path: String,
    pub kind: Kind,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub mtime: (i64, i64),
}

pub trait Sink {
    /// `data` holds exactly the file's size for [`Kind::File`], nothing otherwise.
    fn put(&mut self, item: &Item, data: &mut dyn Read) -> Result<()>;
    /// Called once after the last item.
    fn finish(&mut self) -> Result<()>;
}

/// Walk `found` (named `top` in the copy) into `sink`.
pub fn pack(found: &Found, top: &str, sink: &mut dyn Sink) -> Result<()> {
    let mut w = Walker {
        sink,
        links: HashMap::new(),
    };
    w.add(found, top.to_string())?;
    w.sink.finish()
}

struct Walker<'a> {
    sink: &'a mut dyn Sink,
    links: HashMap<(u64, u64), String>,
}

fn join(parent: &str, name: &str) -> String {
    if parent == "." {
        format!("./{name}")
    } else {
        format!("{parent}/{name}")
    }
}

impl Walker<'_> {
    fn add(&mut self, f: &Found, path: String) -> Result<()> {
        let st = &f.st;
        let mut item = Item {
            path: path.clone(),
            kind: Kind::Dir,
            mode: st.st_mode & 0o7777,
            uid: st.st_uid,
            gid: st.st_gid,
            mtime: (st.st_mtime, st.st_mtime_nsec),
        };
        let fmt = st.st_mode & libc::S_IFMT;
        if fmt != libc::S_IFDIR && st.st_nlink > 1 {
            let key = (st.st_dev, st.st_ino);
            if let Some(first) = self.links.get(&key) {
                item.kind = Kind::Link(first.clone());
                return self.sink.put(&item, &mut io::empty());
            }
            self.links.insert(key, path.clone());
        }
        match fmt {
            libc::S_IFDIR => {
                self.sink.put(&item, &mut io::empty())?;
                let mut names = sys::read_dir(f.fd.as_raw_fd())
                    .map_err(|e| anyhow::anyhow!("read {path}: {}", tree::errno_text(e)))?;
                names.sort();
                for (name, _, _) in names {
                    let child = match sys::openat(f.fd.as_raw_fd(), &name, libc::O_PATH, 0) {
                        Ok(fd) => fd,
                        // Gone since it was listed.
                        Err(libc::ENOENT) => continue,
                        Err(e) => anyhow::bail!(
                            "open {}: {}",
                            join(&path, &name.to_string_lossy()),
                            tree::errno_text(e)
                        ),
                    };
                    let st = sys::fstatat(child.as_raw_fd(), OsStr::new(""))
                        .map_err(|e| anyhow::anyhow!("stat: {}", tree::errno_text(e)))?;
                    let name = String::from_utf8_lossy(name.as_bytes()).into_owned();
                    self.add(&Found { fd: child, st }, join(&path, &name))?;
                }
                Ok(())
            }
            libc::S_IFREG => {
                let file = tree::reopen(&f.fd)
                    .map_err(|e| anyhow::anyhow!("open {path}: {}", tree::errno_text(e)))?;
                let size = st.st_size as u64;
                item.kind = Kind::File { size };
                // Exactly the size given, even if the file changes while it is read.
                let mut data = file.take(size).chain(io::repeat(0)).take(size);
                self.sink.put(&item, &mut data)
            }
            libc::S_IFLNK => {
                let target = sys::readlinkat(f.fd.as_raw_fd(), OsStr::new(""))
                    .map_err(|e| anyhow::anyhow!("readlink {path}: {}", tree::errno_text(e)))?;
                item.kind = Kind::Symlink(target.as_bytes().to_vec());
                self.sink.put(&item, &mut io::empty())
            }
            libc::S_IFCHR => {
                item.kind = Kind::Char(st.st_rdev);
                self.sink.put(&item, &mut io::empty())
            }
            libc::S_IFBLK => {
                item.kind = Kind::Block(st.st_rdev);
                self.sink.put(&item, &mut io::empty())
            }
            libc::S_IFIFO => {
                item.kind = Kind::Fifo;
                self.sink.put(&item, &mut io::empty())
            }
            // Sockets are not copied (as tar leaves them out).
            _ => Ok(()),
        }
    }
}

/// Items as a tar stream (GNU headers, long names as GNU long-name entries).
pub struct TarSink<W: Write> {
    pub b: tar::Builder<W>,
}

impl<W: Write> TarSink<W> {
    pub fn new(w: W) -> TarSink<W> {
        let mut b = tar::Builder::new(w);
        b.mode(tar::HeaderMode::Complete);
        TarSink { b }
    }
}

impl<W: Write> Sink for TarSink<W> {
    fn put(&mut self, item: &Item, data: &mut dyn Read) -> Result<()> {
        let mut h = tar::Header::new_gnu();
        h.set_mode(item.mode);
        h.set_uid(u64::from(item.uid));
        h.set_gid(u64::from(item.gid));
        h.set_mtime(item.mtime.0.max(0) as u64);
        h.set_size(0);
        let path = &item.path;
        let r = match &item.kind {
            Kind::Dir => {
                h.set_entry_type(tar::EntryType::Directory);
                self.b.append_data(&mut h, format!("{path}/"), io::empty())
            }
            Kind::File { size } => {
                h.set_entry_type(tar::EntryType::Regular);
                h.set_size(*size);
                self.b.append_data(&mut h, path, data)
            }
            Kind::Symlink(t) => {
                h.set_entry_type(tar::EntryType::Symlink);
                self.b.append_link(&mut h, path, OsStr::from_bytes(t))
            }
            Kind::Link(t) => {
                h.set_entry_type(tar::EntryType::Link);
                self.b.append_link(&mut h, path, t)
            }
            Kind::Char(rdev) | Kind::Block(rdev) => {
                h.set_entry_type(if matches!(item.kind, Kind::Char(_)) {
                    tar::EntryType::Char
                } else {
                    tar::EntryType::Block
                });
                h.set_device_major(libc::major(*rdev))?;
                h.set_device_minor(libc::minor(*rdev))?;
                self.b.append_data(&mut h, path, io::empty())
            }
            Kind::Fifo => {
                h.set_entry_type(tar::EntryType::Fifo);
                self.b.append_data(&mut h, path, io::empty())
            }
        };
        r.with_context(|| format!("write the tar entry {path}"))
    }

    fn finish(&mut self) -> Result<()> {
        self.b.finish().context("finish the tar stream")?;
        self.b.get_mut().flush().context("write the tar stream")
    }
}
