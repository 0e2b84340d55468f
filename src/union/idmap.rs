//! Owners as fuse-overlayfs maps them: `uidmapping=`/`gidmapping=` and the squash options.
//!
//! A mapping is a list of triplets `ID:MAPPED:LEN`: the owner `ID + k` on disk (k < LEN) is shown
//! as `MAPPED + k`, and an owner a caller gives (create, chown, an ACL entry) is stored through
//! the inverse. An owner on disk outside every triplet shows as the overflow id 65534; an owner
//! given outside them cannot be stored. This is what lets one storage serve user namespaces
//! with different mappings without chowning it: the owners on disk never change. The squash
//! options show every entry as owned by one id and leave what is stored alone.

use crate::sys::Res;

pub const OVERFLOW_ID: u32 = 65534;

/// One direction-free range: disk ids `disk..disk+len` are shown as `shown..shown+len`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Range {
    pub disk: u32,
    pub shown: u32,
    pub len: u32,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct IdMap {
    /// Empty: ids are shown and stored as they are.
    pub ranges: Vec<Range>,
    /// Every entry shown as owned by this id (squash_to_uid / squash_to_gid / squash_to_root).
    pub squash: Option<u32>,
}

/// Parse `ID:MAPPED:LEN[:ID:MAPPED:LEN...]` (a leading `:`, as containers/storage writes it,
/// and `,` between triplets, as fuse-overlayfs's man page writes it, are both taken).
pub fn parse_ranges(v: &str) -> Result<Vec<Range>, String> {
    let nums: Vec<&str> = v
        .trim_start_matches(':')
        .split([':', ','])
        .filter(|s| !s.is_empty())
        .collect();
    if nums.is_empty() || !nums.len().is_multiple_of(3) {
        return Err(format!("'{v}' is not a list of ID:MAPPED:LEN triplets"));
    }
    let mut out = Vec::new();
    for t in nums.chunks(3) {
        let n = |s: &str| -> Result<u32, String> {
            s.parse::<u32>()
                .map_err(|_| format!("'{s}' in '{v}' is not an id"))
        };
        let r = Range {
            disk: n(t[0])?,
            shown: n(t[1])?,
            len: n(t[2])?,
        };
        if r.len == 0 {
            return Err(format!("a triplet of '{v}' has length 0"));
        }
        if r.disk.checked_add(r.len - 1).is_none() || r.shown.checked_add(r.len - 1).is_none() {
            return Err(format!("a triplet of '{v}' runs past the largest id"));
        }
        out.push(r);
    }
    Ok(out)
}

impl IdMap {
    /// The id shown for owner `disk`.
    pub fn show(&self, disk: u32) -> u32 {
        if let Some(s) = self.squash {
            return s;
        }
        if self.ranges.is_empty() {
            return disk;
        }
        self.ranges
            .iter()
            .find(|r| disk >= r.disk && disk - r.disk < r.len)
            .map_or(OVERFLOW_ID, |r| r.shown + (disk - r.disk))
    }

    /// The id stored for owner `shown` given by a caller: EINVAL outside the mapping, as
    /// chown(2) answers for an id the namespace cannot represent.
    pub fn store(&self, shown: u32) -> Res<u32> {
        if self.ranges.is_empty() {
            return Ok(shown);
        }
        self.ranges
            .iter()
            .find(|r| shown >= r.shown && shown - r.shown < r.len)
            .map(|r| r.disk + (shown - r.shown))
            .ok_or(libc::EINVAL)
    }
}

/// The two maps of a mount.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Owners {
    pub uid: IdMap,
    pub gid: IdMap,
}

impl Owners {
    /// Show a stat taken from a layer.
    pub fn show_stat(&self, st: &mut libc::stat) {
        st.st_uid = self.uid.show(st.st_uid);
        st.st_gid = self.gid.show(st.st_gid);
    }
}

use super::acl::{GROUP as ACL_GROUP, USER as ACL_USER};

/// Rewrite the ids of a POSIX ACL xattr value (version 2: a 4-byte header, then 8-byte entries
/// of tag, permissions and id) with `user` and `group`; a value of another shape is EINVAL.
pub fn map_acl(
    v: &[u8],
    user: impl Fn(u32) -> Res<u32>,
    group: impl Fn(u32) -> Res<u32>,
) -> Res<Vec<u8>> {
    if v.len() < 4 || !(v.len() - 4).is_multiple_of(8) {
        return Err(libc::EINVAL);
    }
    let mut out = v.to_vec();
    for e in out[4..].chunks_mut(8) {
        let tag = u16::from_le_bytes([e[0], e[1]]);
        let id = u32::from_le_bytes([e[4], e[5], e[6], e[7]]);
        let mapped = match tag {
            ACL_USER => user(id)?,
            ACL_GROUP => group(id)?,
            _ => continue,
        };
        e[4..8].copy_from_slice(&mapped.to_le_bytes());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn triplets_as_containers_storage_writes_them() {
        let r = parse_ranges(":0:1:1001:1001:0:1:1002:1002:64535").unwrap();
        assert_eq!(r.len(), 3);
        assert_eq!(
            r[0],
            Range {
                disk: 0,
                shown: 1,
                len: 1001
            }
        );
        let m = IdMap {
            ranges: r,
            squash: None,
        };
        assert_eq!(m.show(0), 1);
        assert_eq!(m.show(1000), 1001);
        assert_eq!(m.show(1001), 0);
        assert_eq!(m.show(1002), 1002);
        assert_eq!(m.show(70000), OVERFLOW_ID);
        assert_eq!(m.store(0), Ok(1001));
        assert_eq!(m.store(1), Ok(0));
        assert_eq!(m.store(70000), Err(libc::EINVAL));
    }

    #[test]
    fn bad_triplets_are_refused() {
        for bad in ["", "0:1", "0:1:0", "a:1:1", "0:4294967295:2", "0:1:1:2"] {
            assert!(parse_ranges(bad).is_err(), "{bad}");
        }
        assert_eq!(parse_ranges("0:1000:1,1:110000:65536").unwrap().len(), 2);
    }

    #[test]
    fn squash_shows_one_id_and_stores_what_is_given() {
        let m = IdMap {
            ranges: Vec::new(),
            squash: Some(0),
        };
        assert_eq!(m.show(1234), 0);
        assert_eq!(m.store(1234), Ok(1234));
    }

    #[test]
    fn acl_entries_are_mapped_and_others_kept() {
        let mut v = 2u32.to_le_bytes().to_vec();
        for (tag, id) in [
            (0x01u16, u32::MAX),
            (ACL_USER, 5),
            (ACL_GROUP, 7),
            (0x20, u32::MAX),
        ] {
            v.extend_from_slice(&tag.to_le_bytes());
            v.extend_from_slice(&6u16.to_le_bytes());
            v.extend_from_slice(&id.to_le_bytes());
        }
        let m = map_acl(&v, |u| Ok(u + 100), |g| Ok(g + 200)).unwrap();
        let id = |i: usize| u32::from_le_bytes(m[4 + i * 8 + 4..4 + i * 8 + 8].try_into().unwrap());
        assert_eq!((id(0), id(1), id(2), id(3)), (u32::MAX, 105, 207, u32::MAX));
        assert_eq!(map_acl(&v[..7], Ok, Ok), Err(libc::EINVAL));
    }
}
