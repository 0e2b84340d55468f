//! What a layer tar held besides its files' data (headers, PAX records, padding, the end),
//! kept beside the unpacked layer as `layers/split/<hex>` (what Docker keeps with tar-split),
//! so `image save` writes the tar an image was imported from again byte for byte: its digest
//! is its diff_id, and the saved image keeps its id.
//!
//! The record is a sequence of segments: `R <len u64> <bytes>` (bytes as they were) and
//! `F <size u64> <len u32> <path>` (`size` bytes of the layer's file at `path`).

use std::cell::RefCell;
use std::fs::File;
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::rc::Rc;

use anyhow::{bail, Context, Result};

pub struct State {
    out: BufWriter<File>,
    raw: Vec<u8>,
    skip: u64,
}

/// Shared by the reader that records and the unpacker that says where file data starts.
#[derive(Clone)]
pub struct Split(Rc<RefCell<State>>);

impl Split {
    pub fn create(p: &Path) -> Result<Split> {
        let f = File::create(p).with_context(|| format!("{}", p.display()))?;
        Ok(Split(Rc::new(RefCell::new(State {
            out: BufWriter::with_capacity(1 << 16, f),
            raw: Vec::new(),
            skip: 0,
        }))))
    }

    /// The next `size` bytes read are the data of the layer's file `rel`.
    pub fn file(&self, rel: &Path, size: u64) -> io::Result<()> {
        let mut s = self.0.borrow_mut();
        flush_raw(&mut s)?;
        let p = rel.as_os_str().as_bytes();
        s.out.write_all(b"F")?;
        s.out.write_all(&size.to_le_bytes())?;
        s.out.write_all(&(p.len() as u32).to_le_bytes())?;
        s.out.write_all(p)?;
        s.skip = size;
        Ok(())
    }

    /// Write out what is left and sync it.
    pub fn finish(&self) -> io::Result<()> {
        let mut s = self.0.borrow_mut();
        flush_raw(&mut s)?;
        s.out.flush()?;
        s.out.get_ref().sync_all()
    }

    pub fn reader<R: Read>(&self, inner: R) -> Recorder<R> {
        Recorder {
            inner,
            split: self.clone(),
        }
    }
}

fn flush_raw(s: &mut State) -> io::Result<()> {
    if s.raw.is_empty() {
        return Ok(());
    }
    let raw = std::mem::take(&mut s.raw);
    s.out.write_all(b"R")?;
    s.out.write_all(&(raw.len() as u64).to_le_bytes())?;
    s.out.write_all(&raw)?;
    if raw.capacity() <= 1 << 20 {
        s.raw = raw;
        s.raw.clear();
    }
    Ok(())
}

/// A reader that records every byte but the files' data.
pub struct Recorder<R> {
    inner: R,
    split: Split,
}

impl<R: Read> Read for Recorder<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        let mut s = self.split.0.borrow_mut();
        let skipped = (s.skip.min(n as u64)) as usize;
        s.skip -= skipped as u64;
        s.raw.extend_from_slice(&buf[skipped..n]);
        if s.raw.len() >= 1 << 20 {
            flush_raw(&mut s)?;
        }
        Ok(n)
    }
}

/// Write the tar again from the record `split` and the layer directory `layer`.
pub fn rebuild(split: &Path, layer: &Path, mut w: impl Write) -> Result<()> {
    let mut r = BufReader::with_capacity(1 << 16, File::open(split)?);
    let mut tag = [0u8; 1];
    loop {
        match r.read_exact(&mut tag) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(()),
            Err(e) => return Err(e.into()),
        }
        let mut n = [0u8; 8];
        r.read_exact(&mut n)?;
        let n = u64::from_le_bytes(n);
        match tag[0] {
            b'R' => {
                let got = io::copy(&mut (&mut r).take(n), &mut w)?;
                if got != n {
                    bail!("{}: truncated", split.display());
                }
            }
            b'F' => {
                let mut l = [0u8; 4];
                r.read_exact(&mut l)?;
                let mut p = vec![0u8; u32::from_le_bytes(l) as usize];
                r.read_exact(&mut p)?;
                let rel = crate::image::tar::clean(Path::new(std::ffi::OsStr::from_bytes(&p)))?;
                let f = open_beneath(layer, &rel)?;
                let got = io::copy(&mut f.take(n), &mut w)?;
                if got != n {
                    bail!("{}: shorter than the tar had it", rel.display());
                }
            }
            _ => bail!("{}: not a layer record", split.display()),
        }
    }
}

/// Open a layer's file without following a symlink on the way or leaving the layer.
fn open_beneath(layer: &Path, rel: &Path) -> Result<File> {
    let root = crate::image::at::open_dir_path(layer)?;
    let fd = crate::sys::openat2(
        std::os::fd::AsRawFd::as_raw_fd(&root),
        rel,
        libc::O_RDONLY | libc::O_NOFOLLOW,
        0,
        crate::sys::RESOLVE_SAFE,
    )
    .map_err(io::Error::from_raw_os_error)
    .with_context(|| format!("{}", rel.display()))?;
    Ok(File::from(fd))
}
