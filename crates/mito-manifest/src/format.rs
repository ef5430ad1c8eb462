//! Bytes of manifest files, pure (no I/O).
//!
//! Every manifest file is two JSON lines: a header, then the body.
//!
//! ```text
//!  {"magic":"mito-manifest","format":1,"kind":"delta","len":1234,"crc32c":305419896}\n
//!  {"version":12,"actions":[...]}            <- exactly `len` bytes, CRC32C `crc32c`
//! ```
//!
//! `kind` is `delta` (`{version:020}.json`), `checkpoint` (`{version:020}.checkpoint`) or
//! `pointer` (`_last_checkpoint`). A file whose header, length or checksum does not match is
//! corrupted; nothing of its body is used.

use serde::{Deserialize, Serialize};

use crate::action::{Action, RegionManifest};

/// The first field of every header.
pub const MAGIC: &str = "mito-manifest";
/// The format version this build writes and reads.
pub const FORMAT_VERSION: u32 = 1;
/// Headers longer than this are refused before parsing.
const MAX_HEADER: usize = 256;

/// What a manifest file holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FileKind {
    /// One version's actions.
    Delta,
    /// The whole state at one version.
    Checkpoint,
    /// Which checkpoint is the latest.
    Pointer,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Header {
    magic: String,
    format: u32,
    kind: FileKind,
    len: u64,
    crc32c: u32,
}

/// The body of a delta file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Delta {
    /// The version these actions make.
    pub version: u64,
    /// The actions, applied in order.
    pub actions: Vec<Action>,
}

/// The body of a checkpoint file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// The state at `state.manifest_version`.
    pub state: RegionManifest,
}

/// The body of `_last_checkpoint`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pointer {
    /// The version of the latest checkpoint.
    pub version: u64,
    /// Size of the checkpoint file in bytes.
    pub size: u64,
    /// CRC32C of the whole checkpoint file.
    pub checksum: u32,
}

/// Wraps a body in its header.
pub fn encode(kind: FileKind, body: &[u8]) -> Vec<u8> {
    let header = Header {
        magic: MAGIC.to_string(),
        format: FORMAT_VERSION,
        kind,
        len: body.len() as u64,
        crc32c: crc32c::crc32c(body),
    };
    // A struct of strings and integers always serializes.
    let mut out = serde_json::to_vec(&header).unwrap_or_default();
    out.push(b'\n');
    out.extend_from_slice(body);
    out
}

/// The checked body of a file of `kind`.
pub fn decode(kind: FileKind, bytes: &[u8]) -> Result<&[u8], String> {
    let nl = bytes
        .iter()
        .take(MAX_HEADER)
        .position(|b| *b == b'\n')
        .ok_or_else(|| "no header line".to_string())?;
    let (head, rest) = bytes.split_at(nl);
    let body = rest.get(1..).unwrap_or_default();
    let header: Header = serde_json::from_slice(head).map_err(|e| format!("bad header: {e}"))?;
    if header.magic != MAGIC {
        return Err(format!("bad magic {:?}", header.magic));
    }
    if header.format != FORMAT_VERSION {
        return Err(format!(
            "unsupported manifest format {} (this build reads {FORMAT_VERSION})",
            header.format
        ));
    }
    if header.kind != kind {
        return Err(format!(
            "a {:?} file where a {kind:?} was expected",
            header.kind
        ));
    }
    if header.len != body.len() as u64 {
        return Err(format!(
            "body is {} bytes, header says {}",
            body.len(),
            header.len
        ));
    }
    let crc = crc32c::crc32c(body);
    if crc != header.crc32c {
        return Err(format!(
            "body checksum {crc:#010x} differs from {:#010x} in the header",
            header.crc32c
        ));
    }
    Ok(body)
}

/// Encodes a delta file. Manifest types hold strings, integers and validated metadata, so
/// serializing them does not fail in practice; if it ever did, the error reaches the writer
/// instead of an empty body reaching the disk.
pub fn encode_delta(delta: &Delta) -> Result<Vec<u8>, serde_json::Error> {
    Ok(encode(FileKind::Delta, &serde_json::to_vec(delta)?))
}

/// Decodes a delta file.
pub fn decode_delta(bytes: &[u8]) -> Result<Delta, String> {
    let body = decode(FileKind::Delta, bytes)?;
    serde_json::from_slice(body).map_err(|e| format!("bad delta: {e}"))
}

/// Encodes a checkpoint file (see [`encode_delta`] on errors).
pub fn encode_checkpoint(checkpoint: &Checkpoint) -> Result<Vec<u8>, serde_json::Error> {
    Ok(encode(
        FileKind::Checkpoint,
        &serde_json::to_vec(checkpoint)?,
    ))
}

/// Decodes a checkpoint file.
pub fn decode_checkpoint(bytes: &[u8]) -> Result<Checkpoint, String> {
    let body = decode(FileKind::Checkpoint, bytes)?;
    let cp: Checkpoint =
        serde_json::from_slice(body).map_err(|e| format!("bad checkpoint: {e}"))?;
    cp.state.check_invariants()?;
    Ok(cp)
}

/// Encodes the pointer file (see [`encode_delta`] on errors).
pub fn encode_pointer(pointer: &Pointer) -> Result<Vec<u8>, serde_json::Error> {
    Ok(encode(FileKind::Pointer, &serde_json::to_vec(pointer)?))
}

/// Decodes the pointer file.
pub fn decode_pointer(bytes: &[u8]) -> Result<Pointer, String> {
    let body = decode(FileKind::Pointer, bytes)?;
    serde_json::from_slice(body).map_err(|e| format!("bad pointer: {e}"))
}

/// The fuzz target's body: [`fuzz_decode`] against the state of a small fixed region.
pub fn fuzz_manifest_action(data: &[u8]) -> Result<(), String> {
    use arrow_schema::{DataType, TimeUnit};
    use store_api::RegionId;
    use store_api::metadata::{ColumnMetadata, RegionMetadataBuilder, SemanticType};

    let mut b = RegionMetadataBuilder::new(RegionId::new(1024, 1));
    b.push_column(ColumnMetadata::new(
        0,
        "host",
        DataType::Utf8,
        SemanticType::Tag,
    ))
    .push_column(ColumnMetadata::new(
        1,
        "ts",
        DataType::Timestamp(TimeUnit::Millisecond, None),
        SemanticType::Timestamp,
    ))
    .push_column(ColumnMetadata::new(
        2,
        "cpu",
        DataType::Float64,
        SemanticType::Field,
    ))
    .primary_key(vec![0]);
    let metadata = b.build().map_err(|e| e.to_string())?;
    fuzz_decode(data, &RegionManifest::new(metadata))
}

/// The fuzz body: decode any bytes as each kind of file; whatever decodes must re-encode to
/// the same value and apply to a state without breaking its invariants. Never panics.
pub fn fuzz_decode(data: &[u8], base: &RegionManifest) -> Result<(), String> {
    if let Ok(delta) = decode_delta(data) {
        let again = decode_delta(&encode_delta(&delta).map_err(|e| e.to_string())?)?;
        if again != delta {
            return Err("delta round trip differs".to_string());
        }
        let mut state = base.clone();
        if state
            .apply(base.manifest_version + 1, &delta.actions)
            .is_ok()
        {
            state.check_invariants()?;
        }
        if let Ok(first) = RegionManifest::from_first(1, &delta.actions) {
            first.check_invariants()?;
        }
    }
    // The body alone too, so that the fuzzer reaches the action decoder without having to
    // forge a checksum.
    if let Ok(delta) = serde_json::from_slice::<Delta>(data) {
        let mut state = base.clone();
        if state
            .apply(base.manifest_version + 1, &delta.actions)
            .is_ok()
        {
            state.check_invariants()?;
        }
    }
    if let Ok(cp) = decode_checkpoint(data) {
        let again = decode_checkpoint(&encode_checkpoint(&cp).map_err(|e| e.to_string())?)?;
        if again != cp {
            return Err("checkpoint round trip differs".to_string());
        }
    }
    if let Ok(p) = decode_pointer(data)
        && decode_pointer(&encode_pointer(&p).map_err(|e| e.to_string())?)? != p
    {
        return Err("pointer round trip differs".to_string());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelope_round_trip_and_every_flip_detected() {
        let body = br#"{"version":3,"actions":[]}"#;
        let bytes = encode(FileKind::Delta, body);
        assert_eq!(decode(FileKind::Delta, &bytes).unwrap(), body);
        assert!(decode(FileKind::Checkpoint, &bytes).is_err());
        for pos in 0..bytes.len() {
            for bit in 0..8 {
                let mut b = bytes.clone();
                if let Some(x) = b.get_mut(pos) {
                    *x ^= 1 << bit;
                }
                // Either an error, or (a flip inside JSON whitespace-free header that still
                // parses to the same header) the same body.
                if let Ok(got) = decode(FileKind::Delta, &b) {
                    assert_eq!(got, body, "flip at {pos}.{bit}");
                }
            }
        }
        for cut in 0..bytes.len() {
            assert!(decode(FileKind::Delta, bytes.get(..cut).unwrap_or_default()).is_err());
        }
    }
}
