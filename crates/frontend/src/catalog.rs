//! The catalog file: which tables exist and which regions hold them.
//!
//! A table's schema lives in its regions' manifests; the catalog only maps names to ids, so
//! it stays small and a table's columns can never disagree with its data.
//!
//! | offset | size | field |
//! |---:|---:|---|
//! | 0 | 8 | magic `MITOCATL` |
//! | 8 | 4 | format version, u32 little endian (1) |
//! | 12 | 4 | body length in bytes, u32 little endian |
//! | 16 | 4 | CRC32C of bytes 0..16 followed by the body |
//! | 20 | n | body: JSON `{"next_table_id": u32, "tables": [{"name", "table_id", "regions"}]}` |
//!
//! [`encode`] and [`decode`] are pure; [`decode`] checks the magic, version, length and
//! checksum, then the body's rules (unique non-empty names of at most 255 bytes, unique ids
//! below `next_table_id`, at least one region per table), and refuses anything else.
//! The file is replaced atomically (write a temporary file, fsync, rename, fsync the
//! directory), so a crash leaves the old or the new catalog, never a mix.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use snafu::{ResultExt, Snafu, ensure};
use store_api::RegionId;

/// The catalog's file name inside the data directory.
pub const FILE_NAME: &str = "catalog.mito";
const MAGIC: &[u8; 8] = b"MITOCATL";
const VERSION: u32 = 1;
const HEADER: usize = 20;
/// The first table id handed out (lower ids are kept for system tables).
pub const FIRST_TABLE_ID: u32 = 1024;
/// Longest table name, in bytes.
pub const MAX_NAME_BYTES: usize = 255;

/// Why a catalog cannot be read or written.
#[derive(Debug, Snafu)]
#[snafu(visibility(pub(crate)))]
pub enum CatalogError {
    /// The bytes are not a valid catalog.
    #[snafu(display("catalog {}: {reason}", path.display()))]
    Corrupted {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// Reading or writing the file failed.
    #[snafu(display("catalog {}: {source}", path.display()))]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
}

/// One table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TableEntry {
    /// The table's name (a line-protocol measurement, a SQL identifier).
    pub name: String,
    /// The table's id: the high 32 bits of its region ids.
    pub table_id: u32,
    /// Region numbers of the table (one today: no partitioning yet).
    pub regions: Vec<u32>,
}

impl TableEntry {
    /// The ids of the table's regions.
    pub fn region_ids(&self) -> impl Iterator<Item = RegionId> + '_ {
        self.regions
            .iter()
            .map(|n| RegionId::new(self.table_id, *n))
    }
}

/// The whole catalog.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Catalog {
    /// The id the next table gets; ids are never reused, even after a crash mid-create.
    pub next_table_id: u32,
    /// Tables in creation order.
    pub tables: Vec<TableEntry>,
}

impl Default for Catalog {
    fn default() -> Self {
        Self {
            next_table_id: FIRST_TABLE_ID,
            tables: Vec::new(),
        }
    }
}

impl Catalog {
    /// The table named `name`.
    pub fn table(&self, name: &str) -> Option<&TableEntry> {
        self.tables.iter().find(|t| t.name == name)
    }

    /// Checks the rules [`decode`] enforces; `Err` holds the first broken one.
    pub fn check(&self) -> Result<(), String> {
        let mut names = HashSet::new();
        let mut ids = HashSet::new();
        for t in &self.tables {
            check_name(&t.name)?;
            if !names.insert(t.name.as_str()) {
                return Err(format!("table '{}' listed twice", t.name));
            }
            if !ids.insert(t.table_id) {
                return Err(format!("table id {} used twice", t.table_id));
            }
            if t.table_id >= self.next_table_id {
                return Err(format!(
                    "table '{}' has id {} but the next id is {}",
                    t.name, t.table_id, self.next_table_id
                ));
            }
            if t.regions.is_empty() {
                return Err(format!("table '{}' has no region", t.name));
            }
        }
        Ok(())
    }
}

/// Whether `name` can name a table (`Err` says why not).
pub fn check_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("a table name cannot be empty".into());
    }
    if name.len() > MAX_NAME_BYTES {
        return Err(format!(
            "table name '{}...' is {} bytes long, more than {MAX_NAME_BYTES}",
            name.chars().take(32).collect::<String>(),
            name.len()
        ));
    }
    if name.chars().any(char::is_control) {
        return Err(format!("table name {name:?} holds a control character"));
    }
    Ok(())
}

/// The catalog's bytes.
pub fn encode(catalog: &Catalog) -> Vec<u8> {
    // A struct of strings and integers always serializes.
    let body = serde_json::to_vec(catalog).unwrap_or_default();
    let mut out = Vec::with_capacity(HEADER + body.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&VERSION.to_le_bytes());
    out.extend_from_slice(&u32::try_from(body.len()).unwrap_or(u32::MAX).to_le_bytes());
    let crc = crc32c::crc32c_append(crc32c::crc32c(&out), &body);
    out.extend_from_slice(&crc.to_le_bytes());
    out.extend_from_slice(&body);
    out
}

/// Decodes and checks a catalog; the error says what is wrong (the caller adds the path).
pub fn decode(bytes: &[u8]) -> Result<Catalog, String> {
    let header = bytes.get(..HEADER).ok_or_else(|| {
        format!(
            "{} bytes, shorter than the {HEADER}-byte header",
            bytes.len()
        )
    })?;
    let word = |at: usize| -> u32 {
        let mut b = [0u8; 4];
        b.copy_from_slice(header.get(at..at + 4).unwrap_or(&[0; 4]));
        u32::from_le_bytes(b)
    };
    if header.get(..8) != Some(MAGIC.as_slice()) {
        return Err("bad magic: not a catalog file".into());
    }
    let version = word(8);
    if version != VERSION {
        return Err(format!(
            "format version {version}, this build reads {VERSION}"
        ));
    }
    let len = usize::try_from(word(12)).unwrap_or(usize::MAX);
    let body = bytes.get(HEADER..).unwrap_or_default();
    if body.len() != len {
        return Err(format!(
            "body is {} bytes, the header says {len}",
            body.len()
        ));
    }
    let crc = crc32c::crc32c_append(crc32c::crc32c(header.get(..16).unwrap_or_default()), body);
    if crc != word(16) {
        return Err(format!(
            "checksum mismatch (stored {:#010x}, computed {crc:#010x})",
            word(16)
        ));
    }
    let catalog: Catalog =
        serde_json::from_slice(body).map_err(|e| format!("body does not decode: {e}"))?;
    catalog.check()?;
    Ok(catalog)
}

/// Reads the catalog of `dir`. A directory without one has the empty catalog, unless the
/// engine already holds regions there: then the catalog was lost (its tables would vanish and
/// their names could never be used again), and that is an error naming what is there.
pub fn load(dir: &Path) -> Result<Catalog, CatalogError> {
    let path = dir.join(FILE_NAME);
    match std::fs::read(&path) {
        Ok(bytes) => decode(&bytes).map_err(|reason| CatalogError::Corrupted { path, reason }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let regions = dir.join(REGIONS_DIR);
            let tables: Vec<String> = match std::fs::read_dir(&regions) {
                Ok(entries) => entries
                    .flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect(),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
                Err(source) => {
                    return Err(CatalogError::Io {
                        path: regions,
                        source,
                    });
                }
            };
            if tables.is_empty() {
                return Ok(Catalog::default());
            }
            Err(CatalogError::Corrupted {
                path,
                reason: format!(
                    "is missing, but {} holds the regions of {} table id(s) ({}): the table \
                     names are lost; restore the file (the directory was not changed)",
                    regions.display(),
                    tables.len(),
                    tables.join(", ")
                ),
            })
        }
        Err(source) => Err(CatalogError::Io { path, source }),
    }
}

/// Where the engine keeps regions, under the data directory (`data/` + the engine's
/// `regions/{table id}/`).
const REGIONS_DIR: &str = "data/regions";

/// Replaces the catalog of `dir` atomically and durably.
pub fn store(dir: &Path, catalog: &Catalog) -> Result<(), CatalogError> {
    let path = dir.join(FILE_NAME);
    let fs = mito_fs::fs_for(dir);
    mito_fs::replace(&*fs, dir, FILE_NAME, &encode(catalog))
        .context(IoSnafu { path: path.clone() })?;
    ensure!(
        path.exists(),
        CorruptedSnafu {
            path,
            reason: "missing right after it was written"
        }
    );
    Ok(())
}

/// The fuzz body of `fuzz/fuzz_targets/catalog.rs`: any bytes either fail to decode or
/// decode into a catalog that keeps its rules and re-encodes to the same bytes.
pub fn fuzz_catalog(data: &[u8]) -> Result<(), String> {
    let Ok(catalog) = decode(data) else {
        return Ok(());
    };
    catalog.check()?;
    let again = decode(&encode(&catalog))?;
    if again != catalog {
        return Err(format!("{catalog:?} re-decodes as {again:?}"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Catalog {
        Catalog {
            next_table_id: 1026,
            tables: vec![
                TableEntry {
                    name: "cpu".into(),
                    table_id: 1024,
                    regions: vec![0],
                },
                TableEntry {
                    name: "my mem, \"quoted\"".into(),
                    table_id: 1025,
                    regions: vec![0],
                },
            ],
        }
    }

    #[test]
    fn round_trip() {
        let c = sample();
        assert_eq!(decode(&encode(&c)).unwrap(), c);
        assert_eq!(
            decode(&encode(&Catalog::default())).unwrap(),
            Catalog::default()
        );
    }

    /// The version-1 encoding, frozen: it must always decode to the same catalog.
    #[test]
    fn frozen_version_1() {
        let frozen = include_bytes!("../tests/fixtures/catalog_v1.mito");
        assert_eq!(decode(frozen).unwrap(), sample());
        assert_eq!(encode(&sample()), frozen.as_slice());
    }

    #[test]
    fn every_flipped_bit_and_every_cut_is_refused() {
        let bytes = encode(&sample());
        for i in 0..bytes.len() * 8 {
            let mut b = bytes.clone();
            b[i / 8] ^= 1 << (i % 8);
            assert!(decode(&b).is_err(), "bit {i} flipped was accepted");
        }
        for len in 0..bytes.len() {
            assert!(decode(&bytes[..len]).is_err(), "cut at {len} was accepted");
        }
    }

    #[test]
    fn broken_rules_are_refused() {
        let mut dup = sample();
        dup.tables[1].name = "cpu".into();
        assert!(decode(&encode(&dup)).unwrap_err().contains("twice"));
        let mut id = sample();
        id.next_table_id = 1025;
        assert!(decode(&encode(&id)).unwrap_err().contains("next id"));
        let mut empty = sample();
        empty.tables[0].regions.clear();
        assert!(decode(&encode(&empty)).unwrap_err().contains("no region"));
        let mut long = sample();
        long.tables[0].name = "x".repeat(256);
        assert!(decode(&encode(&long)).unwrap_err().contains("256 bytes"));
    }

    /// Replays the checked-in cargo-fuzz corpus (see `fuzz/`).
    #[test]
    fn fuzz_corpus_replays() {
        test_util::replay_corpus("catalog", 2, fuzz_catalog);
    }

    #[test]
    fn store_and_load() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(load(dir.path()).unwrap(), Catalog::default());
        store(dir.path(), &sample()).unwrap();
        assert_eq!(load(dir.path()).unwrap(), sample());
        let mut bytes = encode(&sample());
        let last = bytes.len() - 1;
        bytes[last] ^= 0x20;
        std::fs::write(dir.path().join(FILE_NAME), bytes).unwrap();
        let err = load(dir.path()).unwrap_err().to_string();
        assert!(err.contains(FILE_NAME) && err.contains("checksum"), "{err}");
    }
}
