//! sha256 digests computed while a stream is read, and the compressions a layer tar comes in.

use std::io::{self, BufRead, BufReader, Read};

use anyhow::{bail, Result};
use sha2::{Digest, Sha256};

/// A reader that hashes (and counts) every byte read through it.
pub struct Hashing<R> {
    inner: R,
    hash: Sha256,
    pub bytes: u64,
}

impl<R: Read> Hashing<R> {
    pub fn new(inner: R) -> Self {
        Hashing {
            inner,
            hash: Sha256::new(),
            bytes: 0,
        }
    }

    /// Read what is left (a tar's trailing padding, a compressor's trailer) so the digest
    /// covers the whole stream, then return it as `sha256:<hex>` with the byte count.
    pub fn finish(mut self) -> io::Result<(String, u64)> {
        io::copy(&mut self, &mut io::sink())?;
        Ok((format!("sha256:{}", hex(&self.hash.finalize())), self.bytes))
    }
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hash.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }
}

pub fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

pub fn sha256_of(data: &[u8]) -> String {
    format!("sha256:{}", hex(&Sha256::digest(data)))
}

/// The hex part of a `sha256:<hex>` digest, refusing any other algorithm or a malformed value
/// (it becomes a directory name).
pub fn sha256_hex(d: &str) -> Result<&str> {
    let Some(h) = d.strip_prefix("sha256:") else {
        bail!("digest {d:?}: only sha256 digests are supported");
    };
    if h.len() != 64
        || !h
            .bytes()
            .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c))
    {
        bail!("digest {d:?}: not a sha256 digest");
    }
    Ok(h)
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Compression {
    None,
    Gzip,
    Zstd,
}

impl Compression {
    /// What the first bytes of a stream say it is.
    pub fn sniff(head: &[u8]) -> Result<Compression> {
        Ok(match head {
            [0x1f, 0x8b, ..] => Compression::Gzip,
            [0x28, 0xb5, 0x2f, 0xfd, ..] => Compression::Zstd,
            [b'B', b'Z', b'h', ..] => bail!("bzip2 compression is not supported"),
            [0xfd, b'7', b'z', b'X', b'Z', ..] => bail!("xz compression is not supported"),
            _ => Compression::None,
        })
    }

    pub fn reader<'a>(self, r: impl Read + 'a) -> Result<Box<dyn Read + 'a>> {
        Ok(match self {
            Compression::None => Box::new(r),
            Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(r)),
            Compression::Zstd => Box::new(zstd::stream::read::Decoder::new(r)?),
        })
    }
}

/// A stream decompressed as its first bytes say.
pub fn decompressed<'a>(r: impl Read + 'a) -> Result<Box<dyn Read + 'a>> {
    let mut b = BufReader::with_capacity(1 << 16, r);
    let kind = Compression::sniff(b.fill_buf()?)?;
    kind.reader(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests_cover_the_whole_stream() {
        let mut h = Hashing::new(&b"hello"[..]);
        let mut first = [0u8; 2];
        h.read_exact(&mut first).unwrap();
        let (d, n) = h.finish().unwrap();
        assert_eq!(n, 5);
        assert_eq!(d, sha256_of(b"hello"));
        assert!(d.ends_with("2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"));
    }

    #[test]
    fn digests_are_checked_before_they_name_a_directory() {
        assert!(sha256_hex("sha512:00").is_err());
        assert!(sha256_hex("sha256:../../etc").is_err());
        let ok = format!("sha256:{}", "a".repeat(64));
        assert_eq!(sha256_hex(&ok).unwrap(), "a".repeat(64));
    }

    #[test]
    fn compression_is_sniffed() {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        std::io::Write::write_all(&mut gz, b"data").unwrap();
        let gz = gz.finish().unwrap();
        let z = zstd::encode_all(&b"data"[..], 1).unwrap();
        for blob in [b"data".to_vec(), gz, z] {
            let mut s = String::new();
            decompressed(&blob[..])
                .unwrap()
                .read_to_string(&mut s)
                .unwrap();
            assert_eq!(s, "data");
        }
        assert!(Compression::sniff(b"BZh9").is_err());
    }
}
