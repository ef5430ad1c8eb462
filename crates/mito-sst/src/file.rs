//! File identity and the metadata of an SST kept in the manifest.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use store_api::time::TimeSpan;
use store_api::{RegionId, SequenceNumber};
use uuid::Uuid;

/// The id of an SST file: a random UUID, unique across regions. The file name is built from it
/// and nothing else.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FileId(Uuid);

impl FileId {
    /// A new random id.
    pub fn random() -> Self {
        Self(Uuid::new_v4())
    }

    /// The id with these 128 bits (tests, deterministic simulations).
    pub const fn from_u128(v: u128) -> Self {
        Self(Uuid::from_u128(v))
    }

    /// The id as 128 bits.
    pub fn as_u128(self) -> u128 {
        self.0.as_u128()
    }
}

impl fmt::Display for FileId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0.hyphenated())
    }
}

impl fmt::Debug for FileId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "FileId({self})")
    }
}

impl FromStr for FileId {
    type Err = uuid::Error;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Uuid::try_parse(s).map(Self)
    }
}

impl Serialize for FileId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for FileId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// The directory of a region's SST files under the region directory.
pub const DATA_DIR: &str = "data/";

/// The path of an SST file: `{region_dir}data/{file_id}.parquet`. `region_dir` ends with `/`
/// (or is empty for the root).
pub fn sst_path(region_dir: &str, file_id: FileId) -> String {
    format!("{region_dir}{DATA_DIR}{file_id}.parquet")
}

/// The file id in an SST file name (`{file_id}.parquet`), if it is one.
pub fn parse_sst_file_name(name: &str) -> Option<FileId> {
    name.strip_suffix(".parquet")?.parse().ok()
}

/// Everything the manifest records about one SST file. Frozen JSON: fields may be added (with
/// serde defaults), never renamed or removed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileMeta {
    /// The region the file belongs to.
    pub region_id: RegionId,
    /// The file's id; its path is [`sst_path`] of it.
    pub file_id: FileId,
    /// Smallest and largest timestamp in the file.
    pub time_range: TimeSpan,
    /// Smallest encoded primary key in the file (of its first row).
    #[serde(with = "hex_bytes")]
    pub min_key: Vec<u8>,
    /// Largest encoded primary key in the file (of its last row).
    #[serde(with = "hex_bytes")]
    pub max_key: Vec<u8>,
    /// Compaction level: 0 for flush outputs.
    pub level: u8,
    /// Rows in the file, tombstones included.
    pub num_rows: u64,
    /// Parquet row groups in the file.
    pub num_row_groups: u64,
    /// Size of the file in bytes.
    pub file_size: u64,
    /// The largest sequence of any row in the file.
    pub max_sequence: SequenceNumber,
    /// CRC32C of the whole file.
    pub checksum: u32,
    /// Where the column chunks end and the page indexes and footer begin.
    pub tail_offset: u64,
    /// CRC32C of the bytes from `tail_offset` to the end of the file (page indexes and
    /// footer, which hold the checksums of the column chunks).
    pub tail_checksum: u32,
}

mod hex_bytes {
    use serde::{Deserialize, Deserializer, Serializer};

    const DIGITS: &[u8; 16] = b"0123456789abcdef";

    pub fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        let mut out = String::with_capacity(bytes.len() * 2);
        for b in bytes {
            for nibble in [b >> 4, b & 0xf] {
                out.push(char::from(
                    DIGITS.get(usize::from(nibble)).copied().unwrap_or(b'0'),
                ));
            }
        }
        s.serialize_str(&out)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        let digit = |c: u8| -> Result<u8, D::Error> {
            match c {
                b'0'..=b'9' => Ok(c - b'0'),
                b'a'..=b'f' => Ok(c - b'a' + 10),
                _ => Err(serde::de::Error::custom(format!(
                    "invalid hex digit {:?}",
                    char::from(c)
                ))),
            }
        };
        let bytes = s.as_bytes();
        if bytes.len() % 2 != 0 {
            return Err(serde::de::Error::custom("hex string of odd length"));
        }
        bytes
            .chunks_exact(2)
            .map(|pair| match pair {
                [hi, lo] => Ok((digit(*hi)? << 4) | digit(*lo)?),
                _ => Err(serde::de::Error::custom("hex string of odd length")),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn sample() -> FileMeta {
        FileMeta {
            region_id: RegionId::new(1024, 3),
            file_id: FileId::from_u128(0x0123_4567_89ab_cdef_0123_4567_89ab_cdef),
            time_range: TimeSpan {
                min: -5,
                max: 1_000,
            },
            min_key: vec![0x01, 0xab],
            max_key: vec![0xff],
            level: 0,
            num_rows: 10,
            num_row_groups: 1,
            file_size: 4096,
            max_sequence: 77,
            checksum: 0xdead_beef,
            tail_offset: 3000,
            tail_checksum: 7,
        }
    }

    #[test]
    fn file_meta_json_round_trip_and_frozen() {
        let meta = sample();
        let json = serde_json::to_string(&meta).unwrap();
        assert_eq!(
            json,
            r#"{"region_id":4398046511107,"file_id":"01234567-89ab-cdef-0123-456789abcdef","time_range":{"min":-5,"max":1000},"min_key":"01ab","max_key":"ff","level":0,"num_rows":10,"num_row_groups":1,"file_size":4096,"max_sequence":77,"checksum":3735928559,"tail_offset":3000,"tail_checksum":7}"#
        );
        assert_eq!(serde_json::from_str::<FileMeta>(&json).unwrap(), meta);
    }

    #[test]
    fn bad_hex_and_ids_are_errors() {
        let json = serde_json::to_string(&sample()).unwrap();
        for (from, to) in [
            ("\"01ab\"", "\"01a\""),
            ("\"01ab\"", "\"01zz\""),
            ("01234567-", "x1234567-"),
        ] {
            let bad = json.replacen(from, to, 1);
            assert!(serde_json::from_str::<FileMeta>(&bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn paths_are_built_from_ids() {
        let id = FileId::from_u128(1);
        let path = sst_path("regions/1024_3/", id);
        assert_eq!(
            path,
            "regions/1024_3/data/00000000-0000-0000-0000-000000000001.parquet"
        );
        let name = path.rsplit('/').next().unwrap();
        assert_eq!(parse_sst_file_name(name), Some(id));
        assert_eq!(parse_sst_file_name("x.parquet"), None);
    }
}
