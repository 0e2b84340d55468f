//! A detached container's log, and the frames its attach socket carries: what its process
//! wrote, each piece with the stream it came on, in the order the monitor read them.
//!
//! Each record is Docker's stdcopy frame (the Engine API's multiplexed stream): one byte for
//! the stream (1 stdout, 2 stderr), three zero bytes, the length as a big-endian u32, then
//! the bytes as they were written (binary output stays exact). `logs` writes stdout records to
//! its stdout and stderr records to its stderr, as `docker logs` does with json-file's
//! per-line streams. A container with a terminal has one stream, stdout, as in Docker.

use std::io::Write;

pub const STDOUT: u8 = 1;
pub const STDERR: u8 = 2;
/// Attach socket only, monitor to client: the container ended; a big-endian i32 exit code.
pub const EXIT: u8 = 0x80;
/// Attach socket only, client to monitor: bytes for the container's stdin.
pub const STDIN: u8 = 0x81;
/// Client to monitor: the client's window size (rows, cols as big-endian u16 each).
pub const RESIZE: u8 = 0x82;
/// Client to monitor: a signal (big-endian i32) for the container's PID 1 (sig-proxy).
pub const SIGNAL: u8 = 0x83;

const HEADER: usize = 8;

/// One frame: its header and `data`.
pub fn frame(stream: u8, data: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(HEADER + data.len());
    v.extend_from_slice(&[stream, 0, 0, 0]);
    v.extend_from_slice(&(data.len() as u32).to_be_bytes());
    v.extend_from_slice(data);
    v
}

/// Append one record to the log (one write: a reader never sees half a header from it).
pub fn append(log: &mut std::fs::File, stream: u8, data: &[u8]) -> std::io::Result<()> {
    log.write_all(&frame(stream, data))
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub stream: u8,
    pub data: Vec<u8>,
}

/// The complete frames at the start of `data`, and how many bytes they take (a frame still
/// being written is left for the next read).
pub fn parse(data: &[u8]) -> (Vec<Record>, usize) {
    let mut out = Vec::new();
    let mut at = 0;
    while data.len() - at >= HEADER {
        let h = &data[at..at + HEADER];
        let len = u32::from_be_bytes([h[4], h[5], h[6], h[7]]) as usize;
        if data.len() - at - HEADER < len {
            break;
        }
        out.push(Record {
            stream: h[0],
            data: data[at + HEADER..at + HEADER + len].to_vec(),
        });
        at += HEADER + len;
    }
    (out, at)
}

/// Is `data` a log of frames? A log written before the streams were kept apart is the raw
/// output, read as stdout.
pub fn is_framed(data: &[u8]) -> bool {
    data.is_empty()
        || (data.len() >= HEADER && matches!(data[0], STDOUT | STDERR) && data[1..4] == [0, 0, 0])
}

/// The log's records and the bytes they take (a raw log: one stdout record, all of it).
pub fn read(data: &[u8]) -> (Vec<Record>, usize) {
    if is_framed(data) {
        parse(data)
    } else {
        let r = Record {
            stream: STDOUT,
            data: data.to_vec(),
        };
        (vec![r], data.len())
    }
}

/// The records split so that each holds at most one line (a piece ends at a newline or where
/// its record ended).
fn pieces(records: Vec<Record>) -> Vec<Record> {
    let mut out = Vec::new();
    for r in records {
        let mut rest = &r.data[..];
        while !rest.is_empty() {
            let end = rest
                .iter()
                .position(|b| *b == b'\n')
                .map_or(rest.len(), |i| i + 1);
            out.push(Record {
                stream: r.stream,
                data: rest[..end].to_vec(),
            });
            rest = &rest[end..];
        }
    }
    out
}

/// The records of the last `n` lines (all when there are fewer). A line starts after a
/// newline whatever stream it is on, and an unended last line counts, as `tail -n` counts.
pub fn tail(records: Vec<Record>, n: usize) -> Vec<Record> {
    let p = pieces(records);
    let starts: Vec<usize> = (0..p.len())
        .filter(|&i| i == 0 || p[i - 1].data.ends_with(b"\n"))
        .collect();
    if n >= starts.len() {
        return p;
    }
    let from = if n == 0 {
        p.len()
    } else {
        starts[starts.len() - n]
    };
    p[from..].to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(stream: u8, s: &str) -> Record {
        Record {
            stream,
            data: s.as_bytes().to_vec(),
        }
    }

    fn text(rs: &[Record]) -> String {
        rs.iter()
            .map(|r| format!("{}:{}", r.stream, String::from_utf8_lossy(&r.data)))
            .collect()
    }

    #[test]
    fn frames_read_back_and_a_half_written_one_waits() {
        let mut d = frame(STDOUT, b"out\n");
        d.extend(frame(STDERR, b"err\n"));
        let whole = d.len();
        d.extend(&frame(STDOUT, b"later")[..5]);
        let (rs, used) = read(&d);
        assert_eq!(rs, vec![r(1, "out\n"), r(2, "err\n")]);
        assert_eq!(used, whole);
    }

    #[test]
    fn a_raw_log_is_stdout() {
        let (rs, used) = read(b"hello\nworld\n");
        assert_eq!(rs, vec![r(1, "hello\nworld\n")]);
        assert_eq!(used, 12);
    }

    #[test]
    fn tail_counts_lines_across_streams() {
        let rs = vec![
            r(1, "a\nb\n"),
            r(2, "c\n"),
            r(1, "d"),
            r(1, "e\n"),
            r(2, "f"),
        ];
        assert_eq!(text(&tail(rs.clone(), 2)), "1:d1:e\n2:f");
        assert_eq!(text(&tail(rs.clone(), 3)), "2:c\n1:d1:e\n2:f");
        assert_eq!(text(&tail(rs.clone(), 0)), "");
        assert_eq!(text(&tail(rs.clone(), 9)), "1:a\n1:b\n2:c\n1:d1:e\n2:f");
        assert_eq!(text(&tail(vec![r(1, "a\nb\n")], 1)), "1:b\n");
    }
}
