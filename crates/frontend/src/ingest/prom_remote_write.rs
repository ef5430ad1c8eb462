//! Prometheus remote write (protocol 1.0): a snappy-compressed (block format) protobuf
//! `WriteRequest`, turned into line protocol for the ordinary ingest.
//!
//! ```text
//! WriteRequest { repeated TimeSeries timeseries = 1; }
//! TimeSeries   { repeated Label labels = 1; repeated Sample samples = 2; }
//! Label        { string name = 1; string value = 2; }
//! Sample       { double value = 1; int64 timestamp = 2; }   // milliseconds
//! ```
//!
//! One table per metric name (`__name__`), the other labels as tags, the sample in the field
//! `greptime_value` (a float), at the sample's millisecond time. Samples that are not finite
//! (NaN, including Prometheus' staleness markers, and infinities) cannot be stored as line
//! protocol floats and are skipped, counted in [`Converted::skipped`]; so are series without
//! a metric name, with a newline in a label, or with a metric name line protocol cannot
//! carry (one that starts with `#`, which would make the line a comment, or with a tab,
//! which the line protocol skips as a blank; neither is a valid Prometheus metric name).

use prost::Message;

/// The field that holds a sample's value.
pub const VALUE_FIELD: &str = "greptime_value";

/// Largest decompressed request accepted by [`decode`] callers that pass no other bound.
pub const DEFAULT_MAX_DECODED: usize = 64 << 20;

/// A remote-write request.
#[derive(Clone, PartialEq, Message)]
pub struct WriteRequest {
    /// The series.
    #[prost(message, repeated, tag = "1")]
    pub timeseries: Vec<TimeSeries>,
}

/// One series and its samples.
#[derive(Clone, PartialEq, Message)]
pub struct TimeSeries {
    /// Its labels (`__name__` among them).
    #[prost(message, repeated, tag = "1")]
    pub labels: Vec<Label>,
    /// Its samples.
    #[prost(message, repeated, tag = "2")]
    pub samples: Vec<Sample>,
}

/// A label.
#[derive(Clone, PartialEq, Message)]
pub struct Label {
    /// The name.
    #[prost(string, tag = "1")]
    pub name: String,
    /// The value.
    #[prost(string, tag = "2")]
    pub value: String,
}

/// A sample.
#[derive(Clone, PartialEq, Message)]
pub struct Sample {
    /// The value.
    #[prost(double, tag = "1")]
    pub value: f64,
    /// Milliseconds since the epoch.
    #[prost(int64, tag = "2")]
    pub timestamp: i64,
}

/// Why a body is not a remote-write request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DecodeError {
    /// Not snappy (block format).
    Snappy(String),
    /// Decompressed, it would be over the limit.
    TooLarge {
        /// Its decompressed length.
        len: usize,
        /// The limit.
        limit: usize,
    },
    /// Not a `WriteRequest` protobuf.
    Protobuf(String),
}

impl std::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Snappy(e) => write!(f, "the body is not snappy-compressed (block format): {e}"),
            Self::TooLarge { len, limit } => write!(
                f,
                "the request decompresses to {len} bytes, over the limit of {limit}"
            ),
            Self::Protobuf(e) => write!(f, "the body is not a remote-write WriteRequest: {e}"),
        }
    }
}

impl std::error::Error for DecodeError {}

/// Decompresses and decodes a request body; the decompressed size is checked against
/// `limit` before anything is allocated for it.
pub fn decode(body: &[u8], limit: usize) -> Result<WriteRequest, DecodeError> {
    let len = snap::raw::decompress_len(body).map_err(|e| DecodeError::Snappy(e.to_string()))?;
    if len > limit {
        return Err(DecodeError::TooLarge { len, limit });
    }
    let raw = snap::raw::Decoder::new()
        .decompress_vec(body)
        .map_err(|e| DecodeError::Snappy(e.to_string()))?;
    WriteRequest::decode(raw.as_slice()).map_err(|e| DecodeError::Protobuf(e.to_string()))
}

/// A request as line protocol.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Converted {
    /// Line protocol, millisecond precision, one line per sample.
    pub lines: String,
    /// Samples written as lines.
    pub samples: u64,
    /// Samples skipped (see the module docs).
    pub skipped: u64,
}

/// The request as line protocol (millisecond timestamps).
pub fn to_line_protocol(request: &WriteRequest) -> Converted {
    let mut out = Converted::default();
    let mut series = String::new();
    for ts in &request.timeseries {
        let name = ts.labels.iter().find(|l| l.name == "__name__");
        let unusable = ts
            .labels
            .iter()
            .any(|l| l.name.contains(['\n', '\r']) || l.value.contains(['\n', '\r']));
        let Some(name) =
            name.filter(|n| !n.value.is_empty() && !n.value.starts_with(['#', '\t']) && !unusable)
        else {
            out.skipped += ts.samples.len() as u64;
            continue;
        };
        series.clear();
        escape(&name.value, &mut series);
        let mut labels: Vec<&Label> = ts
            .labels
            .iter()
            .filter(|l| l.name != "__name__" && !l.name.is_empty() && !l.value.is_empty())
            .collect();
        labels.sort_by(|a, b| a.name.cmp(&b.name));
        for l in labels {
            series.push(',');
            escape(&l.name, &mut series);
            series.push('=');
            escape(&l.value, &mut series);
        }
        for s in &ts.samples {
            if !s.value.is_finite() {
                out.skipped += 1;
                continue;
            }
            out.lines.push_str(&series);
            out.lines.push(' ');
            out.lines.push_str(VALUE_FIELD);
            out.lines.push('=');
            // `{:?}` keeps a decimal point or exponent, so the value reads back as a float.
            out.lines
                .push_str(&format!("{:?} {}\n", s.value, s.timestamp));
            out.samples += 1;
        }
    }
    out
}

/// The fuzz body of `fuzz/fuzz_targets/prom_remote_write.rs`: any bytes either fail to
/// decode with an error, or decode into a request whose every converted line parses back as
/// line protocol with its metric name, one line per kept sample. `Err` describes a broken
/// property.
pub fn fuzz_prom_remote_write(data: &[u8]) -> Result<(), String> {
    let Ok(request) = decode(data, 1 << 20) else {
        return Ok(());
    };
    let converted = to_line_protocol(&request);
    let total: u64 = request
        .timeseries
        .iter()
        .map(|t| t.samples.len() as u64)
        .sum();
    if converted.samples + converted.skipped != total {
        return Err(format!(
            "{} lines + {} skipped != {total} samples",
            converted.samples, converted.skipped
        ));
    }
    let mut line = crate::ingest::line_protocol::Line::default();
    let mut n = 0u64;
    for text in converted.lines.lines() {
        crate::ingest::line_protocol::parse_line(text, &mut line)
            .map_err(|e| format!("converted line {text:?} does not parse: {e}"))?;
        if line.fields.len() != 1 {
            return Err(format!(
                "converted line {text:?} has {} fields",
                line.fields.len()
            ));
        }
        n += 1;
    }
    if n != converted.samples {
        return Err(format!("{n} lines for {} samples", converted.samples));
    }
    Ok(())
}

/// An identifier with the line protocol's escapes (`,`, `=`, space, backslash).
fn escape(s: &str, out: &mut String) {
    for c in s.chars() {
        if matches!(c, ',' | '=' | ' ' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ingest::line_protocol::{FieldValue, Line, parse_line};

    fn label(name: &str, value: &str) -> Label {
        Label {
            name: name.into(),
            value: value.into(),
        }
    }

    fn request() -> WriteRequest {
        WriteRequest {
            timeseries: vec![
                TimeSeries {
                    labels: vec![
                        label("job", "node exporter"),
                        label("__name__", "up"),
                        label("instance", "a,b=c\\"),
                    ],
                    samples: vec![
                        Sample {
                            value: 1.0,
                            timestamp: 1_700_000_000_000,
                        },
                        Sample {
                            value: f64::NAN,
                            timestamp: 1_700_000_001_000,
                        },
                        Sample {
                            value: 1e300,
                            timestamp: -5,
                        },
                    ],
                },
                TimeSeries {
                    labels: vec![label("job", "x")],
                    samples: vec![Sample {
                        value: 2.0,
                        timestamp: 1,
                    }],
                },
            ],
        }
    }

    #[test]
    fn a_request_round_trips_through_snappy_and_protobuf() {
        let r = request();
        let body = snap::raw::Encoder::new()
            .compress_vec(&r.encode_to_vec())
            .unwrap();
        // Compared as bytes: a NaN sample is not equal to itself.
        assert_eq!(
            decode(&body, DEFAULT_MAX_DECODED).unwrap().encode_to_vec(),
            r.encode_to_vec()
        );
        assert!(matches!(
            decode(&body, 10),
            Err(DecodeError::TooLarge { .. })
        ));
        assert!(matches!(
            decode(b"\xff\xff\xff\xff\xff", 100),
            Err(DecodeError::Snappy(_))
        ));
        let junk = snap::raw::Encoder::new().compress_vec(b"\x0a\xff").unwrap();
        assert!(matches!(decode(&junk, 100), Err(DecodeError::Protobuf(_))));
    }

    /// Replays the checked-in cargo-fuzz corpus (see `fuzz/`).
    #[test]
    fn fuzz_corpus_replays() {
        test_util::replay_corpus("prom_remote_write", 4, fuzz_prom_remote_write);
    }

    #[test]
    fn samples_become_lines_that_parse_back_to_the_same_point() {
        let c = to_line_protocol(&request());
        assert_eq!((c.samples, c.skipped), (2, 2), "{}", c.lines);
        let lines: Vec<&str> = c.lines.lines().collect();
        let mut line = Line::default();
        parse_line(lines[0], &mut line).unwrap();
        assert_eq!(line.measurement, "up");
        let tags: Vec<(&str, &str)> = line
            .tags
            .iter()
            .map(|(k, v)| (k.as_ref(), v.as_ref()))
            .collect();
        assert_eq!(tags, [("instance", "a,b=c\\"), ("job", "node exporter")]);
        assert_eq!(line.fields[0].1, FieldValue::Float(1.0));
        assert_eq!(line.timestamp, Some(1_700_000_000_000));
        parse_line(lines[1], &mut line).unwrap();
        assert_eq!(line.fields[0].1, FieldValue::Float(1e300));
        assert_eq!(line.timestamp, Some(-5));
    }

    /// Found by the fuzzer: a metric name starting with `#` made a comment line, one starting
    /// with a tab lost it as a leading blank. Both series are skipped and counted.
    #[test]
    fn metric_names_line_protocol_cannot_carry_are_skipped() {
        for name in ["#&y", "\tcpu", "\t#x"] {
            let r = WriteRequest {
                timeseries: vec![TimeSeries {
                    labels: vec![label("__name__", name), label("k", "v")],
                    samples: vec![Sample {
                        value: 1.0,
                        timestamp: 1,
                    }],
                }],
            };
            let c = to_line_protocol(&r);
            assert_eq!((c.samples, c.skipped), (0, 1), "{name:?}: {}", c.lines);
            assert!(c.lines.is_empty());
        }
        // Elsewhere in the name both are ordinary characters.
        let r = WriteRequest {
            timeseries: vec![TimeSeries {
                labels: vec![label("__name__", "a#\tb")],
                samples: vec![Sample {
                    value: 1.0,
                    timestamp: 1,
                }],
            }],
        };
        let c = to_line_protocol(&r);
        let mut line = Line::default();
        parse_line(c.lines.trim_end(), &mut line).unwrap();
        assert_eq!(line.measurement, "a#\tb");
    }
}
