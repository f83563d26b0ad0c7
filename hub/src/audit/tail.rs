//! Finding the last complete line of a log by reading it backwards, so opening a big log
//! costs about one chunk.

use std::io::{self, Read, Seek, SeekFrom};

/// open() reads the file backwards in chunks of this size to find the last record.
pub(super) const TAIL_CHUNK: usize = 64 * 1024;

/// open() refuses to look further back than this for the last line.
const MAX_LINE: usize = 64 * 1024 * 1024;

/// What open() needs from the end of the file.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Tail {
    /// The last line that ends in '\n', without it.
    pub(super) last_line: Option<Vec<u8>>,
    /// Bytes after the last '\n': a torn write when not 0.
    pub(super) partial_len: u64,
}

/// Finds the last complete line by reading backwards from `len`, so opening a big log costs
/// about one chunk. Each further read doubles, keeping a huge line linear to read.
pub(super) fn read_tail<R: Read + Seek>(r: &mut R, len: u64, chunk: usize) -> io::Result<Tail> {
    // `buf` holds the bytes [pos, len).
    let mut buf: Vec<u8> = Vec::new();
    let mut pos = len;
    let mut want = chunk.max(1) as u64;
    loop {
        if let Some(end) = buf.iter().rposition(|&b| b == b'\n') {
            let start = buf[..end].iter().rposition(|&b| b == b'\n');
            if start.is_some() || pos == 0 {
                let from = start.map_or(0, |s| s + 1);
                return Ok(Tail {
                    last_line: Some(buf[from..end].to_vec()),
                    partial_len: len - (pos + end as u64 + 1),
                });
            }
        } else if pos == 0 {
            return Ok(Tail {
                last_line: None,
                partial_len: len,
            });
        }
        if buf.len() > MAX_LINE {
            // Past any real record: rather than read gigabytes of damage into memory, give up.
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("no complete record in the last {} bytes", buf.len()),
            ));
        }
        let n = want.min(pos);
        pos -= n;
        let mut more = vec![0; usize::try_from(n).map_err(io::Error::other)?];
        r.seek(SeekFrom::Start(pos))?;
        r.read_exact(&mut more)?;
        more.extend_from_slice(&buf);
        buf = more;
        want = want.saturating_mul(2);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::GENESIS;
    use crate::audit::line::{encode_line, parse_line};
    use crate::audit::test_util::request;

    /// Counts the bytes read, to show open() reads only the tail.
    struct Counting<R> {
        inner: R,
        read: usize,
    }

    impl<R: Read> Read for Counting<R> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let n = self.inner.read(buf)?;
            self.read += n;
            Ok(n)
        }
    }

    impl<R: Seek> Seek for Counting<R> {
        fn seek(&mut self, pos: SeekFrom) -> io::Result<u64> {
            self.inner.seek(pos)
        }
    }

    fn tail_of(bytes: &[u8], chunk: usize) -> Tail {
        read_tail(&mut io::Cursor::new(bytes), bytes.len() as u64, chunk).unwrap()
    }

    #[test]
    fn the_tail_reader_reads_only_the_end_of_a_big_log() {
        let mut buf = Vec::new();
        let mut prev = GENESIS.to_owned();
        let mut last = Vec::new();
        for seq in 1..=10_000 {
            let (line, hash) =
                encode_line(seq, "2026-11-22T09:07:33.123Z", &request(seq as u32), &prev).unwrap();
            buf.extend_from_slice(&line);
            last = line;
            prev = hash;
        }
        assert!(buf.len() > 20 * TAIL_CHUNK);
        let mut r = Counting {
            inner: io::Cursor::new(&buf),
            read: 0,
        };
        let tail = read_tail(&mut r, buf.len() as u64, TAIL_CHUNK).unwrap();
        assert_eq!(tail.last_line.as_deref(), Some(&last[..last.len() - 1]));
        assert_eq!(tail.partial_len, 0);
        assert_eq!(r.read, TAIL_CHUNK);
        assert_eq!(
            parse_line(tail.last_line.as_ref().unwrap()).unwrap().seq,
            10_000
        );
    }

    #[test]
    fn the_tail_reader_finds_the_last_complete_line_in_any_shape() {
        let none = Tail {
            last_line: None,
            partial_len: 0,
        };
        assert_eq!(tail_of(b"", 4), none);
        assert_eq!(
            tail_of(b"abc", 2),
            Tail {
                last_line: None,
                partial_len: 3
            }
        );
        for chunk in [1, 2, 3, 5, 64] {
            let t = tail_of(b"one\ntwo\n", chunk);
            assert_eq!(t.last_line.as_deref(), Some(&b"two"[..]), "chunk {chunk}");
            assert_eq!(t.partial_len, 0);

            let t = tail_of(b"only\n", chunk);
            assert_eq!(t.last_line.as_deref(), Some(&b"only"[..]), "chunk {chunk}");

            let t = tail_of(b"one\na very long second line\ntorn", chunk);
            assert_eq!(
                t.last_line.as_deref(),
                Some(&b"a very long second line"[..]),
                "chunk {chunk}"
            );
            assert_eq!(t.partial_len, 4);
        }
    }
}
