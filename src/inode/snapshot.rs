//! The table's records as one flat file, written into the clean-shutdown marker.
//!
//! A mount over an upper with copy-ups used to open RocksDB (read-only: its options, manifest and
//! log) only to read every record into memory. A clean shutdown now leaves the records it had in
//! memory, which are exactly those on disk, in the marker it leaves anyway; the next mount reads
//! that file and opens RocksDB only when it first writes. The marker is removed, durably, before
//! any write of a mount reaches the table (see InodeTable::mark_dirty), so a snapshot is never
//! read beside a table that has changed since. A snapshot that does not parse or whose digest
//! does not match (a marker from an older strata, which is empty, or one cut short by a power
//! loss: it is not synced) is not used: the mount reads RocksDB as before.
//!
//! Layout: `MAGIC`, the record count (u64 LE), the records (upper inode u64, st_ino u64, lower
//! names u32, names linked up u32, has-links u8; LE), then the SHA-256 of everything before it.

use sha2::{Digest, Sha256};

use super::Record;

const MAGIC: &[u8; 8] = b"STRATAI1";
const ENTRY: usize = 8 + 8 + 4 + 4 + 1;
const DIGEST: usize = 32;

/// The file's bytes for `records`.
pub fn encode(records: impl ExactSizeIterator<Item = (u64, Record)>) -> Vec<u8> {
    let mut out = Vec::with_capacity(MAGIC.len() + 8 + records.len() * ENTRY + DIGEST);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&(records.len() as u64).to_le_bytes());
    for (upper, rec) in records {
        let (lower, linked) = rec.links.unwrap_or((0, 0));
        out.extend_from_slice(&upper.to_le_bytes());
        out.extend_from_slice(&rec.ino.to_le_bytes());
        out.extend_from_slice(&lower.to_le_bytes());
        out.extend_from_slice(&linked.to_le_bytes());
        out.push(rec.links.is_some() as u8);
    }
    let digest = Sha256::digest(&out);
    out.extend_from_slice(&digest);
    out
}

/// The records in `data`, or None when it is not a whole snapshot.
pub fn decode(data: &[u8]) -> Option<Vec<(u64, Record)>> {
    let body_len = data.len().checked_sub(DIGEST)?;
    let (body, digest) = data.split_at(body_len);
    if body.len() < MAGIC.len() + 8 || &body[..MAGIC.len()] != MAGIC {
        return None;
    }
    if Sha256::digest(body).as_slice() != digest {
        return None;
    }
    let count = u64::from_le_bytes(body[8..16].try_into().ok()?);
    let entries = &body[16..];
    if (entries.len() % ENTRY != 0) || (entries.len() / ENTRY) as u64 != count {
        return None;
    }
    let u64_at = |e: &[u8], i: usize| u64::from_le_bytes(e[i..i + 8].try_into().unwrap());
    let u32_at = |e: &[u8], i: usize| u32::from_le_bytes(e[i..i + 4].try_into().unwrap());
    let mut out = Vec::with_capacity(count as usize);
    for e in entries.chunks_exact(ENTRY) {
        let links = match e[24] {
            0 => None,
            1 => Some((u32_at(e, 16), u32_at(e, 20))),
            _ => return None,
        };
        let rec = Record {
            ino: u64_at(e, 8),
            links,
        };
        out.push((u64_at(e, 0), rec));
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<(u64, Record)> {
        vec![
            (
                42,
                Record {
                    ino: 7 << 48 | 9,
                    links: None,
                },
            ),
            (
                u64::MAX,
                Record {
                    ino: 1,
                    links: Some((3, 2)),
                },
            ),
        ]
    }

    #[test]
    fn round_trip() {
        let data = encode(sample().into_iter());
        assert_eq!(decode(&data), Some(sample()));
        assert_eq!(decode(&encode(std::iter::empty())), Some(vec![]));
    }

    #[test]
    fn anything_but_a_whole_snapshot_is_refused() {
        let data = encode(sample().into_iter());
        // An older strata's marker is empty; a power loss can leave it cut short or zeroed.
        assert_eq!(decode(b""), None);
        for cut in [1, DIGEST, data.len() - 1] {
            assert_eq!(decode(&data[..data.len() - cut]), None, "cut by {cut}");
        }
        assert_eq!(decode(&vec![0; data.len()]), None);
        let mut flipped = data.clone();
        flipped[20] ^= 1;
        assert_eq!(decode(&flipped), None);
    }
}
