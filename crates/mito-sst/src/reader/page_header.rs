//! A strict walk over a page header's Thrift compact encoding, before parquet parses it.
//!
//! Parquet-rs 59.3.2 reads a header's known fields by their expected type whatever type the
//! field states, and skips unknown fields element by element (a boolean in a list takes it
//! no byte): a header claiming billions of list elements, or lists nested in lists, cost it
//! minutes in a page of a few hundred bytes (the `sst_pages` fuzz target found six such
//! inputs). A page header as parquet writes it holds only the fields of `PageHeader` and its
//! nested headers (`parquet.thrift`), each with its own type, and no container. The walk
//! accepts exactly that: an unknown field, a field of another type than its own, or a header
//! that does not end inside its page is refused. What it accepts, parquet reads the same way
//! and in time linear in the header's bytes.

/// The compact types of the fields a page header holds.
#[derive(Debug, Clone, Copy)]
enum Kind {
    Bool,
    I32,
    I64,
    Binary,
    Struct(Level),
}

/// The structs of a page header.
#[derive(Debug, Clone, Copy)]
enum Level {
    Page,
    Data,
    Index,
    Dictionary,
    DataV2,
    Statistics,
}

impl Level {
    /// Field `id`'s kind (`parquet.thrift`), or `None` for a field this struct does not have.
    fn field(self, id: i64) -> Option<Kind> {
        use Kind::{Binary, Bool, I32, I64, Struct};
        match (self, id) {
            (Self::Page, 1..=4) => Some(I32),
            (Self::Page, 5) => Some(Struct(Self::Data)),
            (Self::Page, 6) => Some(Struct(Self::Index)),
            (Self::Page, 7) => Some(Struct(Self::Dictionary)),
            (Self::Page, 8) => Some(Struct(Self::DataV2)),
            (Self::Data, 1..=4) => Some(I32),
            (Self::Data, 5) => Some(Struct(Self::Statistics)),
            (Self::Dictionary, 1 | 2) => Some(I32),
            (Self::Dictionary, 3) => Some(Bool),
            (Self::DataV2, 1..=6) => Some(I32),
            (Self::DataV2, 7) => Some(Bool),
            (Self::DataV2, 8) => Some(Struct(Self::Statistics)),
            (Self::Statistics, 1 | 2 | 5 | 6) => Some(Binary),
            (Self::Statistics, 3 | 4) => Some(I64),
            (Self::Statistics, 7 | 8) => Some(Bool),
            _ => None,
        }
    }
}

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
/// inside `page` or holds anything but the fields of a page header.
pub(super) fn check(page: &[u8]) -> Result<Header, String> {
    let mut walk = Walk { bytes: page, at: 0 };
    let compressed = walk.fields(Level::Page)?;
    Ok(Header {
        len: walk.at,
        compressed,
    })
}

/// A ULEB128 read at `*at` of `bytes`, of at most `max` bytes (at most 10), `*at` moved past
/// what it read: the value, or where it stops.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Uleb {
    Value(u64),
    /// The bytes end inside it.
    CutOff,
    /// It is longer than `max` bytes.
    TooLong,
}

pub(super) fn uleb(bytes: &[u8], at: &mut usize, max: u32) -> Uleb {
    let mut v = 0u64;
    for i in 0..max.min(10) {
        let Some(b) = bytes.get(*at) else {
            return Uleb::CutOff;
        };
        *at += 1;
        v |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            return Uleb::Value(v);
        }
    }
    Uleb::TooLong
}

fn zigzag(raw: u64) -> i64 {
    ((raw >> 1) as i64) ^ -((raw & 1) as i64)
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

    fn varint(&mut self) -> Result<u64, String> {
        match uleb(self.bytes, &mut self.at, 10) {
            Uleb::Value(v) => Ok(v),
            Uleb::CutOff => Err(format!(
                "page header runs past its page ({} bytes)",
                self.bytes.len()
            )),
            Uleb::TooLong => Err("page header varint over 10 bytes".to_string()),
        }
    }

    /// The fields of one struct of `level`, to its stop; returns field 3 of the page
    /// header (the compressed page size) when this is the page header and it has one.
    fn fields(&mut self, level: Level) -> Result<Option<i64>, String> {
        let mut id: i64 = 0;
        let mut compressed = None;
        loop {
            let head = self.byte()?;
            let stated = head & 0x0f;
            if stated == 0 {
                return Ok(compressed);
            }
            id = match head >> 4 {
                0 => zigzag(self.varint()?),
                delta => id + i64::from(delta),
            };
            let kind = level
                .field(id)
                .ok_or_else(|| format!("page header has no field {id} in {level:?}"))?;
            match (kind, stated) {
                (Kind::Bool, 1 | 2) => {}
                (Kind::I32, 5) | (Kind::I64, 6) => {
                    let v = zigzag(self.varint()?);
                    if matches!(level, Level::Page) && id == 3 {
                        compressed = Some(v);
                    }
                }
                (Kind::Binary, 8) => {
                    let n = self.varint()?;
                    let left = (self.bytes.len() - self.at) as u64;
                    if n > left {
                        return Err(format!("page header states {n} bytes where {left} remain"));
                    }
                    // n <= left, which is a usize.
                    self.at += n as usize;
                }
                (Kind::Struct(inner), 12) => {
                    self.fields(inner)?;
                }
                _ => {
                    return Err(format!(
                        "page header field {id} of {level:?} states type {stated}, not {kind:?}"
                    ));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::check;

    #[test]
    fn headers_walk_and_anything_else_is_refused() {
        // type DATA_PAGE (field 1, i32 0), sizes 100 and 40 (fields 2 and 3), crc (field 4),
        // then a data page header (field 5) holding num_values 10 and stop, stop.
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
        // A list of 2^31 binaries as field 1: a field of another type.
        let huge = [0x19, 0xf8, 0x80, 0x80, 0x80, 0x80, 0x08, 0x00, 0x00];
        assert!(check(&huge).unwrap_err().contains("type 9"));
        // An unknown field (9) holding a list.
        assert!(
            check(&[0x99, 0x11, 0x00, 0x00])
                .unwrap_err()
                .contains("no field 9")
        );
        // An index page header (field 6) with a field: it has none.
        assert!(
            check(&[0x6c, 0x15, 0x00, 0x00, 0x00])
                .unwrap_err()
                .contains("Index")
        );
        // Statistics with a min of 3 bytes and a null count, in a data page header.
        let stats = [
            0x5c, 0x5c, 0x28, 0x03, 1, 2, 3, 0x16, 0x04, 0x00, 0x00, 0x00,
        ];
        assert_eq!(check(&stats).unwrap().len, stats.len());
        // A binary longer than the page.
        assert!(check(&[0x5c, 0x5c, 0x28, 0x09, 1, 0x00, 0x00, 0x00]).is_err());
    }
}
