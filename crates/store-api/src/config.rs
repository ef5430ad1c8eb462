//! Plain config value types shared by every crate's config.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A byte size written for humans: `"64MiB"`, `"512KiB"`, `"1GiB"`, `"4096"` (bytes).
///
/// Units are binary; `KB`/`MB`/`GB`/`TB` and `K`/`M`/`G`/`T` are read as the binary units too.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct ReadableSize(pub u64);

const KIB: u64 = 1024;
const UNITS: &[(&str, u64)] = &[
    ("TiB", KIB * KIB * KIB * KIB),
    ("GiB", KIB * KIB * KIB),
    ("MiB", KIB * KIB),
    ("KiB", KIB),
];

impl ReadableSize {
    /// `n` KiB.
    pub const fn kib(n: u64) -> Self {
        Self(n * KIB)
    }

    /// `n` MiB.
    pub const fn mib(n: u64) -> Self {
        Self(n * KIB * KIB)
    }

    /// `n` GiB.
    pub const fn gib(n: u64) -> Self {
        Self(n * KIB * KIB * KIB)
    }

    /// The size in bytes.
    pub const fn as_bytes(self) -> u64 {
        self.0
    }
}

impl fmt::Display for ReadableSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (unit, factor) in UNITS {
            if self.0 >= *factor && self.0.is_multiple_of(*factor) {
                return write!(f, "{}{unit}", self.0 / factor);
            }
        }
        write!(f, "{}B", self.0)
    }
}

/// Why a size did not parse.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseSizeError(String);

impl fmt::Display for ParseSizeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "invalid size '{}': expected a number with an optional unit B, KiB, MiB, GiB or TiB",
            self.0
        )
    }
}

impl std::error::Error for ParseSizeError {}

impl FromStr for ReadableSize {
    type Err = ParseSizeError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || ParseSizeError(s.to_string());
        let t = s.trim();
        let split = t
            .find(|c: char| !c.is_ascii_digit() && c != '.')
            .unwrap_or(t.len());
        let (num, unit) = t.split_at(split);
        let factor = match unit.trim().to_ascii_lowercase().as_str() {
            "" | "b" => 1,
            "k" | "kb" | "kib" => KIB,
            "m" | "mb" | "mib" => KIB * KIB,
            "g" | "gb" | "gib" => KIB * KIB * KIB,
            "t" | "tb" | "tib" => KIB * KIB * KIB * KIB,
            _ => return Err(err()),
        };
        if let Ok(n) = num.parse::<u64>() {
            return n.checked_mul(factor).map(ReadableSize).ok_or_else(err);
        }
        let f: f64 = num.parse().map_err(|_| err())?;
        let bytes = (f * factor as f64).round();
        if !(0.0..=u64::MAX as f64).contains(&bytes) {
            return Err(err());
        }
        Ok(ReadableSize(bytes as u64))
    }
}

impl Serialize for ReadableSize {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

impl<'de> Deserialize<'de> for ReadableSize {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Bytes(u64),
            Text(String),
        }
        match Raw::deserialize(d)? {
            Raw::Bytes(n) => Ok(ReadableSize(n)),
            Raw::Text(s) => s.parse().map_err(serde::de::Error::custom),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_units() {
        assert_eq!("64MiB".parse(), Ok(ReadableSize::mib(64)));
        assert_eq!("64mb".parse(), Ok(ReadableSize::mib(64)));
        assert_eq!("1 GiB".parse(), Ok(ReadableSize::gib(1)));
        assert_eq!("4096".parse(), Ok(ReadableSize(4096)));
        assert_eq!("0.5KiB".parse(), Ok(ReadableSize(512)));
        assert!("12 parsecs".parse::<ReadableSize>().is_err());
        assert!("".parse::<ReadableSize>().is_err());
        assert!("99999999999TiB".parse::<ReadableSize>().is_err());
    }

    #[test]
    fn displays_largest_exact_unit() {
        assert_eq!(ReadableSize::mib(64).to_string(), "64MiB");
        assert_eq!(ReadableSize(1536).to_string(), "1536B");
        assert_eq!(ReadableSize::kib(1536).to_string(), "1536KiB");
        assert_eq!(ReadableSize(0).to_string(), "0B");
    }

    #[test]
    fn serde_accepts_text_and_numbers() {
        let s: ReadableSize = serde_json::from_str("\"8MiB\"").unwrap();
        assert_eq!(s, ReadableSize::mib(8));
        let n: ReadableSize = serde_json::from_str("100").unwrap();
        assert_eq!(n, ReadableSize(100));
        assert_eq!(
            serde_json::to_string(&ReadableSize::gib(2)).unwrap(),
            "\"2GiB\""
        );
    }
}
