//! A bounded walk over a page header's Thrift compact encoding, before parquet parses it.
//!
//! Parquet-rs 59.3.2 skips a header's unknown fields element by element, and a list that
//! claims billions of elements (or lists nested in lists) costs it minutes even when the page
//! holds a few hundred bytes (the `sst_pages` fuzz target found three such inputs). The walk
//! reads the header as parquet does (booleans in a container take no byte, as parquet skips
//! them) and counts the values it visits: more visits than the page has bytes, a header
//! that does not end inside its page, or nesting deeper than parquet's headers ever do, and
//! the page is refused, in time linear in the page's bytes. No page header parquet writes
//! holds a container at all; a real header visits a handful of values.

/// Deepest nesting of structs and containers a header may have (parquet's own headers nest
/// three deep).
const MAX_DEPTH: usize = 16;

/// A walk over the bytes of one page.
struct Walk<'a> {
    bytes: &'a [u8],
    at: usize,
    /// Values the walk may still visit.
    budget: u64,
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
    let mut walk = Walk {
        bytes: page,
        at: 0,
        budget: page.len() as u64,
    };
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

    /// Takes `n` visits from the budget, refused when it has fewer.
    fn visits(&mut self, n: u64) -> Result<u64, String> {
        if n > self.budget {
            return Err(format!(
                "page header visits more values than its page has bytes ({n} more)"
            ));
        }
        self.budget -= n;
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
            // A boolean's value is in its field header; in a container parquet reads none.
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
                for _ in 0..self.visits(n)? {
                    self.value(element, depth + 1)?;
                }
                Ok(())
            }
            11 => {
                let n = self.varint()?;
                if n == 0 {
                    return Ok(());
                }
                let types = self.byte()?;
                for _ in 0..self.visits(n.saturating_mul(2))? / 2 {
                    self.value(types >> 4, depth + 1)?;
                    self.value(types & 0x0f, depth + 1)?;
                }
                Ok(())
            }
            12 => loop {
                self.visits(1)?;
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
        assert!(check(&huge).unwrap_err().contains("visits"));
        // A list of 100 lists of 100 booleans: 10,100 visits (parquet reads no byte for a
        // boolean in a list) in about 200 bytes.
        let mut bools = vec![0x19, 0xf9, 100];
        bools.extend(std::iter::repeat_n(0xf1, 100).flat_map(|h| [h, 100]));
        bools.push(0x00);
        assert!(check(&bools).unwrap_err().contains("visits"));
        let mut deep = vec![0x19];
        deep.extend(std::iter::repeat_n(0x19, 20));
        deep.extend([0x00; 24]);
        assert!(check(&deep).unwrap_err().contains("deeper"));
        assert!(check(&[0x1e, 0x00]).unwrap_err().contains("unknown type"));
    }
}
