//! A bounded walk over a page header's Thrift compact encoding, before parquet parses it.
//!
//! Parquet-rs 59.3.2 skips a header's unknown fields element by element, and a list that
//! claims billions of elements (or lists nested in lists) costs it minutes even when the page
//! holds a few hundred bytes (the `sst_pages` fuzz target found two such inputs). Every
//! element of a Thrift compact container takes at least one byte, so a container claiming
//! more elements than bytes remain is malformed; this walk refuses it, and any header that
//! does not end inside its page, in time linear in the header's bytes.

/// Deepest nesting of structs and containers a header may have (parquet's own headers nest
/// three deep).
const MAX_DEPTH: usize = 16;

/// A walk over the bytes of one page.
struct Walk<'a> {
    bytes: &'a [u8],
    at: usize,
}

/// What a page's header states that the page's layout needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Header {
    /// Bytes of the header.
    pub(super) len: usize,
    /// The page's compressed size (field 3), when it has one.
    pub(super) compressed: Option<i64>,
}

/// Walks the header at the start of `page`: `Err` with what is wrong when it does not end
/// inside `page` or breaks the rules above.
pub(super) fn check(page: &[u8]) -> Result<Header, String> {
    let mut walk = Walk { bytes: page, at: 0 };
    let compressed = walk.header_struct()?;
    Ok(Header {
        len: walk.at,
        compressed,
    })
}

impl Walk<'_> {
    fn byte(&mut self) -> Result<u8, String> {
        let b = *self.bytes.get(self.at).ok_or_else(|| {
            format!(
                "page header runs past its page ({} bytes)",
                self.bytes.len()
            )
        })?;
        self.at += 1;
        Ok(b)
    }

    fn skip(&mut self, n: u64) -> Result<(), String> {
        let left = (self.bytes.len() - self.at) as u64;
        if n > left {
            return Err(format!("page header states {n} bytes where {left} remain"));
        }
        // n <= left, which is a usize.
        self.at += n as usize;
        Ok(())
    }

    fn varint(&mut self) -> Result<u64, String> {
        let mut v = 0u64;
        for i in 0..10 {
            let b = self.byte()?;
            v |= u64::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err("page header varint over 10 bytes".to_string())
    }

    /// A container's element count, refused when more elements than bytes remain.
    fn count(&mut self, n: u64, per: u64) -> Result<u64, String> {
        let left = (self.bytes.len() - self.at) as u64;
        if n.saturating_mul(per) > left {
            return Err(format!(
                "page header container of {n} elements in {left} bytes"
            ));
        }
        Ok(n)
    }

    /// The top-level struct: its fields skipped, field 3 (the compressed page size) kept.
    fn header_struct(&mut self) -> Result<Option<i64>, String> {
        let mut id: i64 = 0;
        let mut compressed = None;
        loop {
            let head = self.byte()?;
            let kind = head & 0x0f;
            if kind == 0 {
                return Ok(compressed);
            }
            let delta = i64::from(head >> 4);
            id = if delta == 0 {
                let raw = self.varint()?;
                ((raw >> 1) as i64) ^ -((raw & 1) as i64)
            } else {
                id + delta
            };
            if id == 3 && kind == 5 {
                let raw = self.varint()?;
                compressed = Some(((raw >> 1) as i64) ^ -((raw & 1) as i64));
            } else {
                self.value(kind, 1)?;
            }
        }
    }

    /// Skips one value of compact type `kind`; `depth` counts the enclosing structs and
    /// containers.
    fn value(&mut self, kind: u8, depth: usize) -> Result<(), String> {
        if depth > MAX_DEPTH {
            return Err(format!("page header nests deeper than {MAX_DEPTH}"));
        }
        match kind {
            // Booleans in a field header carry their value; in a container, a byte.
            1 | 2 => Ok(()),
            3 => self.skip(1),
            4..=6 => self.varint().map(|_| ()),
            7 => self.skip(8),
            8 => {
                let n = self.varint()?;
                self.skip(n)
            }
            9 | 10 => {
                let head = self.byte()?;
                let element = head & 0x0f;
                let n = match head >> 4 {
                    15 => self.varint()?,
                    n => u64::from(n),
                };
                for _ in 0..self.count(n, 1)? {
                    if element == 1 || element == 2 {
                        self.skip(1)?;
                    } else {
                        self.value(element, depth + 1)?;
                    }
                }
                Ok(())
            }
            11 => {
                let n = self.varint()?;
                if n == 0 {
                    return Ok(());
                }
                let types = self.byte()?;
                for _ in 0..self.count(n, 2)? {
                    for t in [types >> 4, types & 0x0f] {
                        if t == 1 || t == 2 {
                            self.skip(1)?;
                        } else {
                            self.value(t, depth + 1)?;
                        }
                    }
                }
                Ok(())
            }
            12 => loop {
                let head = self.byte()?;
                let field = head & 0x0f;
                if field == 0 {
                    return Ok(());
                }
                if head >> 4 == 0 {
                    self.varint()?;
                }
                self.value(field, depth + 1)?;
            },
            13 => self.skip(16),
            other => Err(format!("page header field of unknown type {other}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::check;

    #[test]
    fn headers_walk_and_malformed_ones_are_refused() {
        // type DATA_PAGE (field 1, i32 0), sizes 100 and 40 (fields 2 and 3), crc (field 4),
        // then a struct (field 5) holding an i32 (num_values 10) and stop, stop.
        let ok = [
            0x15, 0x00, 0x15, 0xc8, 0x01, 0x15, 0x50, 0x15, 0x02, 0x1c, 0x15, 0x14, 0x00, 0x00,
        ];
        let header = check(&[&ok[..], &[9; 40]].concat()).unwrap();
        assert_eq!(header.len, ok.len());
        assert_eq!(header.compressed, Some(40));
        // Cut short anywhere: refused.
        for n in 0..ok.len() {
            assert!(check(&ok[..n]).is_err(), "{n}");
        }
        // A list of 2^31 binaries in a few bytes, lists nested 20 deep, an unknown type.
        let huge = [0x19, 0xf8, 0x80, 0x80, 0x80, 0x80, 0x08, 0x00, 0x00];
        assert!(check(&huge).unwrap_err().contains("elements"));
        let mut deep = vec![0x19];
        deep.extend(std::iter::repeat_n(0x19, 20));
        deep.extend([0x00; 24]);
        assert!(check(&deep).unwrap_err().contains("deeper"));
        assert!(check(&[0x1e, 0x00]).unwrap_err().contains("unknown type"));
    }
}
