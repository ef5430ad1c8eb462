//! The values of a `Bind` message as the prepared statement's `$1..$n`: text (every type,
//! through Arrow's string casts) or binary (the fixed-size numeric types, booleans, text and
//! timestamps), each cast to the type the planner inferred for its placeholder, else to the
//! type the client declared, else kept as text. Network input: every malformed value is an
//! error naming the parameter, never a panic.

use arrow_schema::{DataType, TimeUnit};
use bytes::Bytes;
use datafusion::common::ScalarValue;
use pgwire::api::Type;
use pgwire::api::portal::Format;
use pgwire::error::PgWireResult;

use super::query::user_error;

/// Microseconds from the Unix epoch to PostgreSQL's, 2000-01-01.
const PG_EPOCH_MICROS: i64 = 946_684_800_000_000;

/// Decodes `values` (`None`: SQL NULL) for placeholders of types `inferred`.
pub(crate) fn decode(
    inferred: &[Option<DataType>],
    declared: &[Option<Type>],
    format: &Format,
    values: &[Option<Bytes>],
) -> PgWireResult<Vec<ScalarValue>> {
    if values.len() != inferred.len() {
        return Err(user_error(
            "08P01",
            format!(
                "bind message supplies {} parameters, but the prepared statement requires {}",
                values.len(),
                inferred.len()
            ),
        ));
    }
    if let Format::Individual(codes) = format
        && codes.len() != values.len()
    {
        return Err(user_error(
            "08P01",
            format!(
                "{} parameter format codes for {} parameters",
                codes.len(),
                values.len()
            ),
        ));
    }
    let mut out = Vec::with_capacity(values.len());
    for (i, value) in values.iter().enumerate() {
        let client = declared.get(i).cloned().flatten();
        let target = inferred
            .get(i)
            .cloned()
            .flatten()
            .or_else(|| client.as_ref().map(data_type_of))
            .unwrap_or(DataType::Utf8);
        let n = i + 1;
        let scalar = match value {
            None => ScalarValue::try_from(&target)
                .map_err(|e| user_error("22023", format!("parameter ${n}: {e}")))?,
            Some(bytes) if format.is_binary(i) => {
                let raw = binary(n, client.as_ref(), bytes)?;
                raw.cast_to(&target)
                    .map_err(|e| user_error("22P02", format!("parameter ${n} as {target}: {e}")))?
            }
            Some(bytes) => {
                let text = utf8(n, bytes)?;
                ScalarValue::try_from_string(text.to_string(), &target).map_err(|e| {
                    user_error(
                        "22P02",
                        format!("invalid input for parameter ${n} ({target}): {text:?}: {e}"),
                    )
                })?
            }
        };
        out.push(scalar);
    }
    Ok(out)
}

/// The SQL type of a parameter as a DataFusion type, when the server could not infer it.
fn data_type_of(ty: &Type) -> DataType {
    match *ty {
        Type::BOOL => DataType::Boolean,
        Type::INT2 => DataType::Int16,
        Type::INT4 => DataType::Int32,
        Type::INT8 => DataType::Int64,
        Type::FLOAT4 => DataType::Float32,
        Type::FLOAT8 | Type::NUMERIC => DataType::Float64,
        Type::TIMESTAMP => DataType::Timestamp(TimeUnit::Microsecond, None),
        Type::TIMESTAMPTZ => DataType::Timestamp(TimeUnit::Microsecond, Some("+00:00".into())),
        _ => DataType::Utf8,
    }
}

/// A parameter's bytes as UTF-8.
fn utf8(n: usize, bytes: &[u8]) -> PgWireResult<&str> {
    std::str::from_utf8(bytes)
        .map_err(|_| user_error("22021", format!("parameter ${n} is not valid UTF-8")))
}

/// A binary-format value of the client's declared type.
fn binary(n: usize, ty: Option<&Type>, bytes: &[u8]) -> PgWireResult<ScalarValue> {
    let Some(ty) = ty else {
        return Err(user_error(
            "08P01",
            format!("parameter ${n} is binary but its type was not declared"),
        ));
    };
    // The value's bytes, which must be exactly `N` of them.
    fn exact<const N: usize>(n: usize, ty: &Type, bytes: &[u8]) -> PgWireResult<[u8; N]> {
        bytes.try_into().map_err(|_| {
            user_error(
                "08P01",
                format!(
                    "parameter ${n}: a binary {} is {N} bytes, got {}",
                    ty.name(),
                    bytes.len()
                ),
            )
        })
    }
    Ok(match *ty {
        Type::BOOL => ScalarValue::Boolean(Some(exact::<1>(n, ty, bytes)? != [0])),
        Type::INT2 => ScalarValue::Int16(Some(i16::from_be_bytes(exact(n, ty, bytes)?))),
        Type::INT4 => ScalarValue::Int32(Some(i32::from_be_bytes(exact(n, ty, bytes)?))),
        Type::INT8 => ScalarValue::Int64(Some(i64::from_be_bytes(exact(n, ty, bytes)?))),
        Type::FLOAT4 => ScalarValue::Float32(Some(f32::from_be_bytes(exact(n, ty, bytes)?))),
        Type::FLOAT8 => ScalarValue::Float64(Some(f64::from_be_bytes(exact(n, ty, bytes)?))),
        Type::TEXT | Type::VARCHAR | Type::BPCHAR | Type::NAME | Type::UNKNOWN => {
            ScalarValue::Utf8(Some(utf8(n, bytes)?.to_string()))
        }
        Type::TIMESTAMP | Type::TIMESTAMPTZ => {
            let micros = i64::from_be_bytes(exact(n, ty, bytes)?)
                .checked_add(PG_EPOCH_MICROS)
                .ok_or_else(|| {
                    user_error("22008", format!("parameter ${n}: timestamp out of range"))
                })?;
            let tz = (*ty == Type::TIMESTAMPTZ).then(|| "+00:00".into());
            ScalarValue::TimestampMicrosecond(Some(micros), tz)
        }
        _ => {
            return Err(user_error(
                "0A000",
                format!(
                    "parameter ${n}: binary values of type {} are not supported; send it as text",
                    ty.name()
                ),
            ));
        }
    })
}

/// The fuzz target's body (`fuzz/fuzz_targets/pg_bind.rs`): `data` read as the parameters
/// of one `Bind` (per parameter: the client's declared type, the inferred type, the format,
/// then a length byte, 255 meaning NULL, and that many value bytes) must decode with an
/// error, or into one value per parameter, each of the type it was decoded for. `Err`
/// describes a broken property.
pub fn fuzz_bind(data: &[u8]) -> Result<(), String> {
    const DECLARED: [Option<Type>; 13] = [
        None,
        Some(Type::BOOL),
        Some(Type::INT2),
        Some(Type::INT4),
        Some(Type::INT8),
        Some(Type::FLOAT4),
        Some(Type::FLOAT8),
        Some(Type::NUMERIC),
        Some(Type::TEXT),
        Some(Type::VARCHAR),
        Some(Type::TIMESTAMP),
        Some(Type::TIMESTAMPTZ),
        Some(Type::BYTEA),
    ];
    let inferred_types = [
        None,
        Some(DataType::Boolean),
        Some(DataType::Int16),
        Some(DataType::Int32),
        Some(DataType::Int64),
        Some(DataType::UInt64),
        Some(DataType::Float32),
        Some(DataType::Float64),
        Some(DataType::Utf8),
        Some(DataType::Timestamp(TimeUnit::Nanosecond, None)),
        Some(DataType::Timestamp(
            TimeUnit::Microsecond,
            Some("+00:00".into()),
        )),
        Some(DataType::Date32),
        Some(DataType::Interval(arrow_schema::IntervalUnit::MonthDayNano)),
    ];
    let pick = |b: u8, n: usize| usize::from(b) % n;
    let mut rest = data;
    let mut take = |n: usize| -> Option<&[u8]> {
        let (head, tail) = rest.split_at_checked(n)?;
        rest = tail;
        Some(head)
    };
    let (mut declared, mut inferred, mut codes, mut values) = (vec![], vec![], vec![], vec![]);
    while let Some(&[d, i, f, len]) = take(4) {
        let (Some(d), Some(i)) = (
            DECLARED.get(pick(d, DECLARED.len())),
            inferred_types.get(pick(i, inferred_types.len())),
        ) else {
            return Err("a pick out of range".into());
        };
        declared.push(d.clone());
        inferred.push(i.clone());
        codes.push(i16::from(f & 1));
        values.push(match len {
            255 => None,
            n => Some(Bytes::copy_from_slice(
                take(usize::from(n)).unwrap_or_default(),
            )),
        });
    }
    let Ok(decoded) = decode(&inferred, &declared, &Format::Individual(codes), &values) else {
        return Ok(());
    };
    if decoded.len() != values.len() {
        return Err(format!(
            "{} values for {} parameters",
            decoded.len(),
            values.len()
        ));
    }
    for (n, (v, (i, d))) in decoded
        .iter()
        .zip(inferred.iter().zip(&declared))
        .enumerate()
    {
        let target = i
            .clone()
            .or_else(|| d.as_ref().map(data_type_of))
            .unwrap_or(DataType::Utf8);
        if v.data_type() != target {
            return Err(format!("parameter ${}: {v:?} decoded for {target}", n + 1));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(v: &str) -> Option<Bytes> {
        Some(Bytes::copy_from_slice(v.as_bytes()))
    }

    #[test]
    fn text_and_binary_values_become_the_inferred_types() {
        let inferred = [
            Some(DataType::Utf8),
            Some(DataType::Float64),
            Some(DataType::Timestamp(TimeUnit::Nanosecond, None)),
            None,
            Some(DataType::Int64),
        ];
        let got = decode(
            &inferred,
            &[None, None, None, Some(Type::INT4), Some(Type::INT2)],
            &Format::Individual(vec![0, 0, 0, 1, 1]),
            &[
                text("host_1"),
                text("2.5"),
                text("2016-01-01 00:00:00"),
                Some(Bytes::from_static(&[0xff, 0xff, 0xff, 0xfe])),
                Some(Bytes::from_static(&[0x01, 0x00])),
            ],
        )
        .unwrap();
        assert_eq!(got[0], ScalarValue::Utf8(Some("host_1".into())));
        assert_eq!(got[1], ScalarValue::Float64(Some(2.5)));
        assert_eq!(
            got[2],
            ScalarValue::TimestampNanosecond(Some(1_451_606_400_000_000_000), None)
        );
        assert_eq!(got[3], ScalarValue::Int32(Some(-2)));
        assert_eq!(got[4], ScalarValue::Int64(Some(256)));
        // A binary timestamp counts from 2000-01-01.
        let ts = decode(
            &[None],
            &[Some(Type::TIMESTAMP)],
            &Format::UnifiedBinary,
            &[Some(Bytes::copy_from_slice(&0i64.to_be_bytes()))],
        )
        .unwrap();
        assert_eq!(
            ts[0],
            ScalarValue::TimestampMicrosecond(Some(PG_EPOCH_MICROS), None)
        );
        // NULL keeps its type.
        let null = decode(&[Some(DataType::Int64)], &[], &Format::UnifiedText, &[None]).unwrap();
        assert_eq!(null[0], ScalarValue::Int64(None));
    }

    /// Replays the checked-in cargo-fuzz corpus (see `fuzz/`).
    #[test]
    fn fuzz_corpus_replays() {
        test_util::replay_corpus("pg_bind", 4, fuzz_bind);
    }

    /// A few thousand random binds of the fuzz target's shape, in every test run.
    #[test]
    fn random_binds_decode_or_fail_cleanly() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        for _ in 0..5000 {
            let len = rng.random_range(0..64);
            let data: Vec<u8> = (0..len).map(|_| rng.random()).collect();
            fuzz_bind(&data).unwrap_or_else(|e| panic!("{data:?}: {e}"));
        }
    }

    #[test]
    fn malformed_binds_are_errors() {
        let one = [Some(DataType::Int64)];
        for (declared, format, values) in [
            (vec![], Format::UnifiedText, vec![]),
            (vec![], Format::UnifiedText, vec![text("x")]),
            (
                vec![],
                Format::UnifiedText,
                vec![Some(Bytes::from_static(&[0xff]))],
            ),
            (vec![], Format::UnifiedBinary, vec![text("1")]),
            (
                vec![Some(Type::INT8)],
                Format::UnifiedBinary,
                vec![text("1")],
            ),
            (
                vec![Some(Type::POINT)],
                Format::UnifiedBinary,
                vec![text("1")],
            ),
            (vec![], Format::Individual(vec![0, 0]), vec![text("1")]),
        ] {
            assert!(decode(&one, &declared, &format, &values).is_err());
        }
    }
}
