//! RFC 3339 times in UTC, as Docker writes them in its records and prints them: the one place
//! strata turns seconds since the epoch into a calendar date and back (Howard Hinnant's
//! civil-from-days and days-from-civil, valid for every date of the proleptic Gregorian calendar).

/// Seconds since the epoch, now.
pub fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// `2026-11-23T10:00:00Z`, or with `nanos` `2026-11-23T10:00:00.123456789Z` (Docker's
/// State.StartedAt form).
pub fn rfc3339(secs: i64, nanos: Option<u32>) -> String {
    let (y, m, d) = civil_from_days(secs.div_euclid(86_400));
    let t = secs.rem_euclid(86_400);
    let frac = nanos.map(|n| format!(".{n:09}")).unwrap_or_default();
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}{frac}Z",
        t / 3600,
        t % 3600 / 60,
        t % 60
    )
}

/// Seconds since the epoch and nanoseconds of an RFC 3339 time: `2026-12-03T11:39:24Z`,
/// `...24.5Z`, `...24+01:00` (None for anything else).
pub fn parse_rfc3339(s: &str) -> Option<(i64, u32)> {
    let b = s.as_bytes();
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't' | b' ') {
        return None;
    }
    let n = |r: std::ops::Range<usize>| s.get(r)?.parse::<i64>().ok();
    let (y, m, d) = (n(0..4)?, n(5..7)?, n(8..10)?);
    let (hh, mm, ss) = (n(11..13)?, n(14..16)?, n(17..19)?);
    let mut rest = &s[19..];
    let mut nanos = 0u32;
    if let Some(r) = rest.strip_prefix('.') {
        let digits = r.len() - r.trim_start_matches(|c: char| c.is_ascii_digit()).len();
        let f = &r[..digits];
        nanos = format!("{:0<9}", &f[..f.len().min(9)]).parse().ok()?;
        rest = &r[digits..];
    }
    let offset = match rest {
        "Z" | "z" => 0,
        o if o.len() == 6 && (o.starts_with('+') || o.starts_with('-')) && &o[3..4] == ":" => {
            let v = o[1..3].parse::<i64>().ok()? * 3600 + o[4..6].parse::<i64>().ok()? * 60;
            if o.starts_with('-') {
                -v
            } else {
                v
            }
        }
        _ => return None,
    };
    let secs = days_from_civil(y, m, d) * 86_400 + hh * 3600 + mm * 60 + ss - offset;
    Some((secs, nanos))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_and_parses_back() {
        assert_eq!(rfc3339(0, None), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400, None), "2000-02-29T00:00:00Z");
        assert_eq!(
            rfc3339(1_764_763_164, Some(5)),
            "2025-12-03T11:59:24.000000005Z"
        );
        assert_eq!(rfc3339(-1, None), "1969-12-31T23:59:59Z");
        for secs in [0, 951_782_400, 1_764_763_164, -86_401, 4_102_444_800] {
            assert_eq!(parse_rfc3339(&rfc3339(secs, Some(7))), Some((secs, 7)));
        }
        assert_eq!(
            parse_rfc3339("2026-12-03T12:39:24.5+01:00"),
            Some((
                parse_rfc3339("2026-12-03T11:39:24Z").unwrap().0,
                500_000_000
            ))
        );
        assert_eq!(parse_rfc3339("2026-12-03"), None);
        assert_eq!(parse_rfc3339("2026-12-03T11:39:24"), None);
    }
}
