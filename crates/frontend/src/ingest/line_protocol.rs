//! The InfluxDB line protocol: one point per line.
//!
//! ```text
//! measurement[,tag=value...] field=value[,field=value...] [timestamp]
//! ```
//!
//! - Measurement, tag keys, tag values and field keys are identifiers: a backslash before
//!   `,`, `=`, a space or another backslash escapes it; any other backslash is kept as is.
//!   They may not be empty.
//! - Field values: floats (`1`, `-1.5`, `2e10`), signed integers (`1i`), unsigned integers
//!   (`1u`), booleans (`t`, `T`, `true`, `True`, `TRUE`, and the same for false), and double
//!   quoted strings where `\"` and `\\` are escapes. NaN and infinities are refused, as
//!   InfluxDB does. At least one field is required.
//! - The timestamp is an optional signed integer in the writer's precision (nanoseconds by
//!   default); without one the writer uses the time the line is read.
//! - Blank lines and lines starting with `#` are skipped; a trailing `\r` and leading
//!   spaces and tabs are ignored.
//!
//! [`parse_line`] is a pure function over one line (no newline inside); it either fills the
//! whole [`Line`] or returns a [`ParseError`] with the byte column of the problem, so a bad
//! line never yields part of a point.

use std::borrow::Cow;
use std::fmt;

/// One field value.
#[derive(Debug, Clone, PartialEq)]
pub enum FieldValue<'a> {
    /// A float (no suffix).
    Float(f64),
    /// A signed integer (`i` suffix).
    Int(i64),
    /// An unsigned integer (`u` suffix).
    UInt(u64),
    /// A boolean.
    Bool(bool),
    /// A string (quoted).
    Str(Cow<'a, str>),
}

impl FieldValue<'_> {
    /// The kind of the value.
    pub fn kind(&self) -> FieldKind {
        match self {
            FieldValue::Float(_) => FieldKind::Float,
            FieldValue::Int(_) => FieldKind::Int,
            FieldValue::UInt(_) => FieldKind::UInt,
            FieldValue::Bool(_) => FieldKind::Bool,
            FieldValue::Str(_) => FieldKind::String,
        }
    }
}

/// The type of a field, as the line protocol spells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FieldKind {
    /// `float64`.
    Float,
    /// `int64`.
    Int,
    /// `uint64`.
    UInt,
    /// `bool`.
    Bool,
    /// `string`.
    String,
}

impl fmt::Display for FieldKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            FieldKind::Float => "float",
            FieldKind::Int => "integer",
            FieldKind::UInt => "unsigned integer",
            FieldKind::Bool => "boolean",
            FieldKind::String => "string",
        })
    }
}

/// One parsed point. Reused from line to line (its vectors keep their capacity).
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Line<'a> {
    /// The measurement (the table).
    pub measurement: Cow<'a, str>,
    /// Tags, in the order of the line.
    pub tags: Vec<(Cow<'a, str>, Cow<'a, str>)>,
    /// Fields, in the order of the line; never empty after a successful parse.
    pub fields: Vec<(Cow<'a, str>, FieldValue<'a>)>,
    /// The timestamp in the writer's precision, if the line has one.
    pub timestamp: Option<i64>,
}

/// Why a line does not parse, and where (0-based byte column).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    /// Byte offset inside the line.
    pub column: usize,
    /// What is wrong.
    pub reason: String,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "column {}: {}", self.column + 1, self.reason)
    }
}

impl std::error::Error for ParseError {}

/// Whether a line holds no point (blank or a comment).
pub fn is_skipped(line: &[u8]) -> bool {
    let trimmed = trim_ascii_start(line);
    trimmed.is_empty() || trimmed == b"\r" || trimmed.first() == Some(&b'#')
}

fn trim_ascii_start(b: &[u8]) -> &[u8] {
    let n = b.iter().take_while(|c| **c == b' ' || **c == b'\t').count();
    b.get(n..).unwrap_or_default()
}

/// Parses one line (without its `\n`) into `out`, replacing what `out` held.
pub fn parse_line<'a>(line: &'a str, out: &mut Line<'a>) -> Result<(), ParseError> {
    let line = line.strip_suffix('\r').unwrap_or(line);
    // Leading blanks are skipped, as InfluxDB skips them (its 1.x CLI sends ` m f=1`);
    // error columns still count from the start of the line.
    let (lead, line) = trim_blanks(line);
    parse_into(line, out).map_err(|f| {
        let mut e = f.into_error(line);
        e.column += lead;
        e
    })
}

/// The number of leading spaces and tabs, and the line without them.
pub fn trim_blanks(line: &str) -> (usize, &str) {
    let rest = line.trim_start_matches([' ', '\t']);
    (line.len() - rest.len(), rest)
}

fn parse_into<'a>(line: &'a str, out: &mut Line<'a>) -> Result<(), Fail> {
    out.tags.clear();
    out.fields.clear();
    out.timestamp = None;
    let mut p = Parser {
        s: line,
        b: line.as_bytes(),
        pos: 0,
    };
    out.measurement = p.ident(Ident::Measurement)?;
    while p.peek() == Some(b',') {
        p.pos += 1;
        let key = p.ident(Ident::TagKey)?;
        p.expect(b'=', "expected '=' after a tag key")?;
        let value = p.ident(Ident::TagValue)?;
        out.tags.push((key, value));
    }
    parse_rest(&mut p, out)
}

/// Parses the fields and the timestamp of a line whose series (measurement and tags) ends
/// at byte `series_end` (the first unescaped space), leaving `out`'s measurement and tags
/// as they are. The result and any error are what [`parse_line`] gives for that line.
pub fn parse_fields<'a>(
    line: &'a str,
    series_end: usize,
    out: &mut Line<'a>,
) -> Result<(), ParseError> {
    let line = line.strip_suffix('\r').unwrap_or(line);
    out.fields.clear();
    out.timestamp = None;
    let mut p = Parser {
        s: line,
        b: line.as_bytes(),
        pos: series_end,
    };
    parse_rest(&mut p, out).map_err(|f| f.into_error(line))
}

/// Where the series of a line ends (its first space), when no escape comes before it: the
/// line's measurement and tags are then a function of those bytes alone.
pub fn plain_series_end(line: &[u8]) -> Option<usize> {
    let end = memchr::memchr(b' ', line)?;
    let series = line.get(..end)?;
    (memchr::memchr(b'\\', series).is_none()).then_some(end)
}

/// The fields and the timestamp, from the space after the series.
fn parse_rest<'a>(p: &mut Parser<'a>, out: &mut Line<'a>) -> Result<(), Fail> {
    p.spaces("expected a space before the fields")?;
    loop {
        let key = p.ident(Ident::FieldKey)?;
        p.expect(b'=', "expected '=' after a field key")?;
        let value = p.field_value()?;
        out.fields.push((key, value));
        if p.peek() == Some(b',') {
            p.pos += 1;
        } else {
            break;
        }
    }
    match p.peek() {
        None => return Ok(()),
        Some(b' ') => {}
        Some(_) => {
            return Err(p.fail(Reason::Msg(
                "expected ',', a space or the end after a field value",
            )));
        }
    }
    p.skip_spaces();
    if p.peek().is_none() {
        return Ok(());
    }
    let start = p.pos;
    while p.peek().is_some_and(|c| c != b' ') {
        p.pos += 1;
    }
    let token = p.s.get(start..p.pos).unwrap_or_default();
    out.timestamp = Some(token.parse::<i64>().map_err(|_| Fail {
        column: start,
        reason: Reason::Timestamp,
    })?);
    p.skip_spaces();
    if p.peek().is_some() {
        return Err(p.fail(Reason::Msg("unexpected text after the timestamp")));
    }
    Ok(())
}

/// A parse failure, kept small and cheap on the hot path; the message is built only when a
/// line is refused.
#[derive(Debug, Clone, Copy)]
struct Fail {
    column: usize,
    reason: Reason,
}

#[derive(Debug, Clone, Copy)]
enum Reason {
    Msg(&'static str),
    Empty(Ident),
    Hash,
    Value,
    Unterminated,
    Timestamp,
}

impl Fail {
    fn into_error(self, line: &str) -> ParseError {
        let token = || {
            let rest = line.get(self.column..).unwrap_or_default();
            let end = rest.find([',', ' ']).unwrap_or(rest.len());
            rest.get(..end).unwrap_or_default().to_string()
        };
        let reason = match self.reason {
            Reason::Msg(m) => m.to_string(),
            Reason::Empty(kind) => format!("empty {}", kind.name()),
            Reason::Hash => "a measurement cannot start with '#'".to_string(),
            Reason::Value => {
                let t = token();
                if t.is_empty() {
                    "missing field value".to_string()
                } else {
                    format!(
                        "field value '{t}' is not a float, an integer (1i), an unsigned integer (1u), a boolean or a quoted string"
                    )
                }
            }
            Reason::Unterminated => "unterminated string field value".to_string(),
            Reason::Timestamp => format!(
                "timestamp '{}' is not an integer in the range of i64",
                line.get(self.column..)
                    .unwrap_or_default()
                    .split(' ')
                    .next()
                    .unwrap_or_default()
            ),
        };
        ParseError {
            column: self.column,
            reason,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ident {
    Measurement,
    TagKey,
    TagValue,
    FieldKey,
}

impl Ident {
    fn name(self) -> &'static str {
        match self {
            Ident::Measurement => "measurement",
            Ident::TagKey => "tag key",
            Ident::TagValue => "tag value",
            Ident::FieldKey => "field key",
        }
    }

    /// The bytes that end the identifier, or start an escape, as a lookup table.
    fn stops(self) -> &'static [bool; 256] {
        match self {
            Ident::Measurement | Ident::TagValue => &VALUE_STOPS,
            Ident::TagKey | Ident::FieldKey => &KEY_STOPS,
        }
    }
}

#[expect(
    clippy::indexing_slicing,
    reason = "evaluated at compile time; a u8 always indexes a 256-entry table"
)]
const fn stops(bytes: &[u8]) -> [bool; 256] {
    let mut t = [false; 256];
    let mut i = 0;
    while i < bytes.len() {
        t[bytes[i] as usize] = true;
        i += 1;
    }
    t
}

static VALUE_STOPS: [bool; 256] = stops(b", \\");
static KEY_STOPS: [bool; 256] = stops(b", =\\");

struct Parser<'a> {
    s: &'a str,
    b: &'a [u8],
    pos: usize,
}

impl<'a> Parser<'a> {
    fn peek(&self) -> Option<u8> {
        self.b.get(self.pos).copied()
    }

    fn fail(&self, reason: Reason) -> Fail {
        Fail {
            column: self.pos,
            reason,
        }
    }

    fn expect(&mut self, c: u8, reason: &'static str) -> Result<(), Fail> {
        if self.peek() == Some(c) {
            self.pos += 1;
            Ok(())
        } else {
            Err(self.fail(Reason::Msg(reason)))
        }
    }

    fn skip_spaces(&mut self) {
        while self.peek() == Some(b' ') {
            self.pos += 1;
        }
    }

    fn spaces(&mut self, reason: &'static str) -> Result<(), Fail> {
        if self.peek() != Some(b' ') {
            return Err(self.fail(Reason::Msg(reason)));
        }
        self.skip_spaces();
        Ok(())
    }

    /// An identifier up to its first unescaped terminator; borrowed unless it has escapes.
    #[inline]
    fn ident(&mut self, kind: Ident) -> Result<Cow<'a, str>, Fail> {
        let start = self.pos;
        let mut escaped = false;
        let table = kind.stops();
        while let Some(&c) = self.b.get(self.pos) {
            if table.get(usize::from(c)) != Some(&true) {
                self.pos += 1;
                continue;
            }
            if c == b'\\' {
                if self
                    .b
                    .get(self.pos + 1)
                    .is_some_and(|n| matches!(n, b',' | b'=' | b' ' | b'\\'))
                {
                    escaped = true;
                    self.pos += 2;
                } else {
                    self.pos += 1;
                }
                continue;
            }
            break;
        }
        if self.pos == start {
            return Err(self.fail(Reason::Empty(kind)));
        }
        let raw = self.s.get(start..self.pos).unwrap_or_default();
        if kind == Ident::Measurement && raw.starts_with('#') {
            return Err(Fail {
                column: start,
                reason: Reason::Hash,
            });
        }
        Ok(if escaped {
            Cow::Owned(unescape_ident(raw))
        } else {
            Cow::Borrowed(raw)
        })
    }

    #[inline]
    fn field_value(&mut self) -> Result<FieldValue<'a>, Fail> {
        let start = self.pos;
        if self.peek() == Some(b'"') {
            return self.string_value();
        }
        let rest = self.b.get(start..).unwrap_or_default();
        if let Some((v, len)) = fast_decimal_token(rest) {
            self.pos += len;
            return Ok(FieldValue::Float(v));
        }
        let len = rest
            .iter()
            .position(|c| *c == b',' || *c == b' ')
            .unwrap_or(rest.len());
        self.pos += len;
        let token = self.s.get(start..self.pos).unwrap_or_default();
        parse_scalar(token).ok_or(Fail {
            column: start,
            reason: Reason::Value,
        })
    }

    fn string_value(&mut self) -> Result<FieldValue<'a>, Fail> {
        let open = self.pos;
        self.pos += 1;
        let start = self.pos;
        let mut escaped = false;
        loop {
            match self.peek() {
                None => {
                    return Err(Fail {
                        column: open,
                        reason: Reason::Unterminated,
                    });
                }
                Some(b'\\') if matches!(self.b.get(self.pos + 1), Some(b'"' | b'\\')) => {
                    escaped = true;
                    self.pos += 2;
                }
                Some(b'"') => break,
                Some(_) => self.pos += 1,
            }
        }
        let raw = self.s.get(start..self.pos).unwrap_or_default();
        self.pos += 1;
        Ok(FieldValue::Str(if escaped {
            Cow::Owned(unescape_string(raw))
        } else {
            Cow::Borrowed(raw)
        }))
    }
}

/// A field value that is not a string.
fn parse_scalar(token: &str) -> Option<FieldValue<'static>> {
    let bytes = token.as_bytes();
    let first = *bytes.first()?;
    if !(first.is_ascii_digit() || first == b'-' || first == b'+' || first == b'.') {
        return match token {
            "t" | "T" | "true" | "True" | "TRUE" => Some(FieldValue::Bool(true)),
            "f" | "F" | "false" | "False" | "FALSE" => Some(FieldValue::Bool(false)),
            _ => None,
        };
    }
    match bytes.last() {
        Some(b'i') => {
            return token
                .get(..token.len() - 1)?
                .parse::<i64>()
                .ok()
                .map(FieldValue::Int);
        }
        Some(b'u') => {
            return token
                .get(..token.len() - 1)?
                .parse::<u64>()
                .ok()
                .map(FieldValue::UInt);
        }
        _ => {}
    }
    if let Some(v) = fast_decimal(bytes) {
        return Some(FieldValue::Float(v));
    }
    // Only digits, signs, dots and exponents: keeps out `inf`/`nan` spellings Rust accepts.
    if !bytes
        .iter()
        .all(|c| c.is_ascii_digit() || matches!(c, b'-' | b'+' | b'.' | b'e' | b'E'))
    {
        return None;
    }
    let v = token.parse::<f64>().ok()?;
    v.is_finite().then_some(FieldValue::Float(v))
}

/// Powers of ten that f64 holds exactly.
const EXACT_POW10: [f64; 16] = [
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15,
];

/// `[-]digits[.digits]` with at most 15 digits: the mantissa and the power of ten are both
/// exact in f64, so one division is the correctly rounded value (what `str::parse` returns).
/// `None` for anything else, which takes the general parser.
#[inline]
fn fast_decimal(b: &[u8]) -> Option<f64> {
    fast_decimal_token(b).and_then(|(v, len)| (len == b.len()).then_some(v))
}

/// [`fast_decimal`] of the token that starts `b` (up to a `,`, a space or the end), found in
/// one pass: the value and the token's length, or `None` when the token is anything else.
#[inline]
fn fast_decimal_token(b: &[u8]) -> Option<(f64, usize)> {
    let (negative, start) = match b.first() {
        Some(b'-') => (true, 1),
        _ => (false, 0),
    };
    let mut mantissa: u64 = 0;
    let mut count = 0usize;
    let mut fraction: Option<usize> = None;
    let mut len = b.len();
    for (i, &c) in b.iter().enumerate().skip(start) {
        match c {
            b'0'..=b'9' => {
                mantissa = mantissa * 10 + u64::from(c - b'0');
                count += 1;
                if count > 15 {
                    return None;
                }
                if let Some(f) = fraction.as_mut() {
                    *f += 1;
                }
            }
            b'.' if fraction.is_none() => fraction = Some(0),
            b',' | b' ' => {
                len = i;
                break;
            }
            _ => return None,
        }
    }
    if count == 0 {
        return None;
    }
    let v = mantissa as f64 / EXACT_POW10.get(fraction.unwrap_or(0)).copied()?;
    Some((if negative { -v } else { v }, len))
}

fn unescape_ident(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    let mut chars = raw.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\\'
            && let Some(&n) = chars.peek()
            && matches!(n, ',' | '=' | ' ' | '\\')
        {
            out.push(n);
            chars.next();
            continue;
        }
        out.push(c);
    }
    out
}

fn unescape_string(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    let mut chars = raw.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\\'
            && let Some(&n) = chars.peek()
            && matches!(n, '"' | '\\')
        {
            out.push(n);
            chars.next();
            continue;
        }
        out.push(c);
    }
    out
}

impl Line<'_> {
    /// The line in canonical line protocol (every special character escaped, floats in their
    /// shortest exact form): [`parse_line`] of it gives this line back.
    pub fn to_line_protocol(&self) -> String {
        let mut out = String::new();
        escape_ident(&self.measurement, &mut out);
        for (k, v) in &self.tags {
            out.push(',');
            escape_ident(k, &mut out);
            out.push('=');
            escape_ident(v, &mut out);
        }
        for (i, (k, v)) in self.fields.iter().enumerate() {
            out.push(if i == 0 { ' ' } else { ',' });
            escape_ident(k, &mut out);
            out.push('=');
            match v {
                FieldValue::Float(x) => out.push_str(&format!("{x:?}")),
                FieldValue::Int(x) => out.push_str(&format!("{x}i")),
                FieldValue::UInt(x) => out.push_str(&format!("{x}u")),
                FieldValue::Bool(x) => out.push_str(if *x { "true" } else { "false" }),
                FieldValue::Str(x) => {
                    out.push('"');
                    for c in x.chars() {
                        if c == '"' || c == '\\' {
                            out.push('\\');
                        }
                        out.push(c);
                    }
                    out.push('"');
                }
            }
        }
        if let Some(t) = self.timestamp {
            out.push_str(&format!(" {t}"));
        }
        out
    }
}

fn escape_ident(s: &str, out: &mut String) {
    for c in s.chars() {
        if matches!(c, ',' | '=' | ' ' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
}

/// The fuzz body of `fuzz/fuzz_targets/line_protocol.rs`: any bytes either fail to parse
/// with an error inside the line, or parse into a point whose canonical form parses back to
/// the same point. `Err` describes a broken property.
pub fn fuzz_line_protocol(data: &[u8]) -> Result<(), String> {
    let Ok(text) = std::str::from_utf8(data) else {
        return Ok(());
    };
    let mut line = Line::default();
    match parse_line(text, &mut line) {
        Err(e) if e.column > text.len() => Err(format!("error column {} past the line", e.column)),
        Err(_) => Ok(()),
        Ok(()) => {
            if line.measurement.is_empty() || line.fields.is_empty() {
                return Err(format!("parsed an empty measurement or no field: {line:?}"));
            }
            let canonical = line.to_line_protocol();
            let mut again = Line::default();
            parse_line(&canonical, &mut again)
                .map_err(|e| format!("canonical form {canonical:?} does not parse: {e}"))?;
            if again != line {
                return Err(format!("{canonical:?} parses to {again:?}, not {line:?}"));
            }
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<Line<'_>, ParseError> {
        let mut line = Line::default();
        parse_line(s, &mut line).map(|()| line)
    }

    #[test]
    fn leading_blanks_are_skipped_and_columns_still_count_from_the_line_start() {
        // InfluxDB's 1.x CLI sends its INSERTs with a leading space.
        let l = parse(" \tcpu,host=a usage=1 5").unwrap();
        assert_eq!((l.measurement.as_ref(), l.timestamp), ("cpu", Some(5)));
        let e = parse("  cpu usage=").unwrap_err();
        assert_eq!(e.column, parse("cpu usage=").unwrap_err().column + 2);
    }

    fn fields<'a>(l: &'a Line<'_>) -> Vec<(&'a str, FieldValue<'a>)> {
        l.fields
            .iter()
            .map(|(k, v)| (k.as_ref(), v.clone()))
            .collect()
    }

    #[test]
    fn a_full_line() {
        let l =
            parse("cpu,host=a,region=us usage=1.5,n=3i,u=4u,ok=t,msg=\"hi\" 1700000000000000000")
                .unwrap();
        assert_eq!(l.measurement, "cpu");
        assert_eq!(
            l.tags,
            vec![("host".into(), "a".into()), ("region".into(), "us".into())]
        );
        assert_eq!(
            fields(&l),
            vec![
                ("usage", FieldValue::Float(1.5)),
                ("n", FieldValue::Int(3)),
                ("u", FieldValue::UInt(4)),
                ("ok", FieldValue::Bool(true)),
                ("msg", FieldValue::Str("hi".into())),
            ]
        );
        assert_eq!(l.timestamp, Some(1_700_000_000_000_000_000));
    }

    #[test]
    fn no_tags_no_timestamp_and_trailing_cr() {
        let l = parse("m v=1\r").unwrap();
        assert_eq!(l.measurement, "m");
        assert!(l.tags.is_empty());
        assert_eq!(fields(&l), vec![("v", FieldValue::Float(1.0))]);
        assert_eq!(l.timestamp, None);
        let l = parse("m v=-2e3 -5").unwrap();
        assert_eq!(fields(&l), vec![("v", FieldValue::Float(-2000.0))]);
        assert_eq!(l.timestamp, Some(-5));
    }

    #[test]
    fn escapes() {
        let l = parse(r#"my\ cpu,ho\,st=a\ b\=c f\=x="say \"hi\" \\ \n" 1"#).unwrap();
        assert_eq!(l.measurement, "my cpu");
        assert_eq!(l.tags, vec![("ho,st".into(), "a b=c".into())]);
        assert_eq!(
            fields(&l),
            vec![("f=x", FieldValue::Str(r#"say "hi" \ \n"#.into()))]
        );
        // A backslash before anything else is kept.
        let l = parse(r"m,t=a\b v=1").unwrap();
        assert_eq!(l.tags, vec![("t".into(), r"a\b".into())]);
        // Commas and spaces inside strings need no escape.
        let l = parse(r#"m s="a, b=c" 2"#).unwrap();
        assert_eq!(fields(&l), vec![("s", FieldValue::Str("a, b=c".into()))]);
        assert_eq!(l.timestamp, Some(2));
    }

    #[test]
    fn booleans_and_integers() {
        for (t, v) in [
            ("t", true),
            ("T", true),
            ("true", true),
            ("True", true),
            ("TRUE", true),
            ("f", false),
            ("F", false),
            ("false", false),
            ("False", false),
            ("FALSE", false),
        ] {
            assert_eq!(
                fields(&parse(&format!("m b={t}")).unwrap()),
                vec![("b", FieldValue::Bool(v))]
            );
        }
        let l = parse("m a=-9223372036854775808i,b=18446744073709551615u").unwrap();
        assert_eq!(
            fields(&l),
            vec![
                ("a", FieldValue::Int(i64::MIN)),
                ("b", FieldValue::UInt(u64::MAX))
            ]
        );
    }

    #[test]
    fn bad_lines_name_the_column() {
        let cases = [
            ("cpu", 3, "expected a space"),
            ("cpu ", 4, "empty field key"),
            (",t=1 v=1", 0, "empty measurement"),
            ("m,t v=1", 3, "expected '='"),
            ("m,=a v=1", 2, "empty tag key"),
            ("m,t= v=1", 4, "empty tag value"),
            ("m v=", 4, "missing field value"),
            ("m v=abc", 4, "not a float"),
            ("m v=1x", 4, "not a float"),
            ("m v=nan", 4, "not a float"),
            ("m v=inf", 4, "not a float"),
            ("m v=1e999", 4, "not a float"),
            ("m v=1.5i", 4, "not a float"),
            ("m v=-1u", 4, "not a float"),
            ("m v=99999999999999999999i", 4, "not a float"),
            ("m v=\"abc", 4, "unterminated string"),
            ("m v=1 12x", 6, "timestamp '12x'"),
            ("m v=1 99999999999999999999", 6, "timestamp"),
            ("m v=1 1 2", 8, "after the timestamp"),
            ("m v=\"a\"x", 7, "expected ','"),
            ("m v=1,", 6, "empty field key"),
            ("#m v=1", 0, "cannot start with '#'"),
        ];
        for (line, column, reason) in cases {
            let err = parse(line).unwrap_err();
            assert_eq!(err.column, column, "{line}: {err}");
            assert!(err.reason.contains(reason), "{line}: {err}");
        }
    }

    #[test]
    fn skipped_lines() {
        assert!(is_skipped(b""));
        assert!(is_skipped(b"   "));
        assert!(is_skipped(b"\r"));
        assert!(is_skipped(b"# a comment"));
        assert!(is_skipped(b"  # indented comment"));
        assert!(!is_skipped(b"m v=1"));
    }

    #[test]
    fn canonical_form_round_trips() {
        for text in [
            r#"my\ cpu,ho\,st=a\ b\=c f\=x="say \"hi\" \\ \n",n=-3i,u=0u,b=f,x=1e300 -1"#,
            "m v=0.1",
            r"m\\x,t=a=b v=-0.0",
        ] {
            let mut line = Line::default();
            parse_line(text, &mut line).unwrap();
            let canonical = line.to_line_protocol();
            let mut again = Line::default();
            parse_line(&canonical, &mut again).unwrap();
            assert_eq!(again, line, "{canonical}");
        }
    }

    /// Replays the checked-in cargo-fuzz corpus (see `fuzz/`).
    #[test]
    fn fuzz_corpus_replays() {
        test_util::replay_corpus("line_protocol", 5, fuzz_line_protocol);
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(512))]
        /// The decimal fast path gives exactly what the general parser gives.
        #[test]
        fn fast_decimal_matches_std(s in "-?[0-9]{0,9}(\\.[0-9]{0,9})?") {
            if let Some(v) = fast_decimal(s.as_bytes()) {
                let expected: f64 = s.parse().unwrap();
                proptest::prop_assert_eq!(v.to_bits(), expected.to_bits(), "{}", s);
            } else {
                proptest::prop_assert!(s.trim_start_matches('-').replace('.', "").is_empty() || s.len() > 15, "{}", s);
            }
        }

        /// Any string either parses or errors inside the line; never panics.
        #[test]
        fn never_panics(s in "\\PC{0,64}") {
            let mut line = Line::default();
            if let Err(e) = parse_line(&s, &mut line) {
                proptest::prop_assert!(e.column <= s.len());
            }
        }

        /// Escaped identifiers and strings come back as written.
        #[test]
        fn escaping_round_trips(m in "[a-z ,=\\\\]{1,8}", t in "[a-z ,=\\\\]{1,8}", s in "[a-z \"\\\\,=]{0,8}") {
            let esc = |x: &str| x.replace('\\', "\\\\").replace(',', "\\,").replace('=', "\\=").replace(' ', "\\ ");
            let text = format!("{},k={} v=\"{}\"", esc(&m), esc(&t), s.replace('\\', "\\\\").replace('"', "\\\""));
            let mut line = Line::default();
            parse_line(&text, &mut line).unwrap();
            proptest::prop_assert_eq!(line.measurement.as_ref(), m.as_str());
            proptest::prop_assert_eq!(line.tags[0].1.as_ref(), t.as_str());
            proptest::prop_assert_eq!(&line.fields[0].1, &FieldValue::Str(s.as_str().into()));
        }
    }
}
