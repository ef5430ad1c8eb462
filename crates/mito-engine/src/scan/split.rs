//! How an unordered scan splits its sources: merged only where their time spans overlap.

use store_api::scan::TimeRange;
use store_api::time::TimeSpan;

use super::Source;

/// The pieces an unordered scan reads, each merged on its own (a piece of one source is
/// read as is): see [`split_spans`].
pub(super) fn split_overlapping(sources: Vec<Source>) -> Vec<Vec<Source>> {
    let spans: Vec<TimeSpan> = sources.iter().map(|s| s.span).collect();
    split_spans(&spans)
        .into_iter()
        .map(|piece| {
            piece
                .into_iter()
                .filter_map(|(i, part)| {
                    let s = sources.get(i)?;
                    Some(match part {
                        None => s.clone(),
                        Some(part) => Source {
                            range: Some(TimeRange::of_span(part)),
                            ..s.clone()
                        },
                    })
                })
                .collect()
        })
        .collect()
}

/// Sources read together (merged if more than one): each with the stretch of its span read
/// (`None`: all of it).
type Piece = Vec<(usize, Option<TimeSpan>)>;

/// How to read sources of the time spans `spans`: pieces of (source, the part of its span
/// read, `None` for all of it). Where two or more spans overlap, the sources covering that
/// stretch, restricted to it, form one piece (rows of one key can only meet there, so only
/// there is a merge needed); everywhere else each source is a piece alone, restricted to the
/// time it covers by itself. Two files that share only the edge of their spans (the flushes
/// of concurrent writers do) are so read almost wholly without a merge, not merged row by
/// row over their whole spans.
fn split_spans(spans: &[TimeSpan]) -> Vec<Piece> {
    let mut order: Vec<usize> = (0..spans.len()).collect();
    order.sort_by_key(|&i| spans.get(i).map(|s| (s.min, s.max)));
    let span = |i: usize| spans.get(i).copied();
    // Where at least two spans meet, as disjoint sorted stretches.
    let mut shared: Vec<TimeSpan> = Vec::new();
    for (k, &a) in order.iter().enumerate() {
        let Some(a) = span(a) else { continue };
        for b in order.iter().skip(k + 1).filter_map(|&b| span(b)) {
            if b.min > a.max {
                break;
            }
            shared.extend(a.intersect(b));
        }
    }
    shared.sort_unstable_by_key(|s| (s.min, s.max));
    let mut zones: Vec<TimeSpan> = Vec::new();
    for s in shared {
        match zones.last_mut() {
            Some(last) if s.min <= last.max.saturating_add(1) => *last = last.union(s),
            _ => zones.push(s),
        }
    }
    let mut pieces: Vec<Piece> = zones
        .iter()
        .map(|zone| {
            order
                .iter()
                .filter_map(|&i| Some((i, span(i)?.intersect(*zone)?)))
                .map(|(i, part)| (i, Some(part)))
                .collect()
        })
        .collect();
    for &i in &order {
        let Some(whole) = span(i) else { continue };
        // The span minus the zones.
        let mut at = Some(whole.min);
        for zone in zones.iter().filter(|z| z.overlaps(whole)) {
            let Some(from) = at else { break };
            if zone.min > from {
                pieces.push(vec![(i, Some(TimeSpan::new(from, zone.min - 1)))]);
            }
            // None: the zone runs to the last timestamp there is.
            at = zone.max.checked_add(1).map(|next| next.max(from));
        }
        if let Some(at) = at
            && at <= whole.max
        {
            pieces.push(vec![(
                i,
                (at != whole.min).then_some(TimeSpan::new(at, whole.max)),
            )]);
        }
    }
    pieces
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing, reason = "tests")]

    use store_api::time::TimeSpan;

    /// A piece with its stretches as `(min, max)` pairs.
    type Pairs = Vec<(usize, Option<(i64, i64)>)>;

    /// [`super::split_spans`] over `(min, max)` pairs, its pieces as pairs too.
    fn split_spans(spans: &[(i64, i64)]) -> Vec<Pairs> {
        let spans: Vec<TimeSpan> = spans.iter().map(|(a, b)| TimeSpan::new(*a, *b)).collect();
        super::split_spans(&spans)
            .into_iter()
            .map(|p| {
                p.into_iter()
                    .map(|(i, part)| (i, part.map(|s| (s.min, s.max))))
                    .collect()
            })
            .collect()
    }

    /// Every timestamp of every span is read exactly once from its source; where spans
    /// overlap, one piece holds every source covering it (so the merge sees every version of
    /// a key); a piece of one source covers time no other span covers.
    fn check(spans: &[(i64, i64)]) {
        let pieces = split_spans(spans);
        let parts = |i: usize, t: i64| {
            pieces
                .iter()
                .enumerate()
                .filter(|(_, p)| {
                    p.iter()
                        .any(|(j, part)| *j == i && part.is_none_or(|(lo, hi)| lo <= t && t <= hi))
                })
                .map(|(k, _)| k)
                .collect::<Vec<_>>()
        };
        let lo = spans.iter().map(|s| s.0).min().unwrap_or(0);
        let hi = spans.iter().map(|s| s.1).max().unwrap_or(0);
        for t in lo..=hi {
            let covering: Vec<usize> = (0..spans.len())
                .filter(|&i| spans[i].0 <= t && t <= spans[i].1)
                .collect();
            let mut piece = None;
            for &i in &covering {
                let found = parts(i, t);
                assert_eq!(
                    found.len(),
                    1,
                    "{spans:?}: source {i} at {t}: pieces {found:?}"
                );
                // All sources covering t read it in the same piece.
                assert!(piece.is_none_or(|p| p == found[0]), "{spans:?} at {t}");
                piece = Some(found[0]);
            }
            if let Some(p) = piece {
                assert_eq!(pieces[p].len() > 1, covering.len() > 1, "{spans:?} at {t}");
            }
        }
        for p in &pieces {
            for (i, part) in p {
                if let Some((lo, hi)) = part {
                    assert!(
                        lo <= hi && spans[*i].0 <= *lo && *hi <= spans[*i].1,
                        "{spans:?}"
                    );
                }
            }
        }
    }

    #[test]
    fn overlapping_spans_are_merged_only_where_they_overlap() {
        // Files sharing an edge, as two writers' flushes do: one tiny merged piece.
        let pieces = split_spans(&[(0, 100), (100, 200), (201, 300), (290, 310)]);
        let merged: Vec<_> = pieces.iter().filter(|p| p.len() > 1).collect();
        assert_eq!(merged.len(), 2, "{pieces:?}");
        assert!(merged.iter().all(|p| {
            p.iter()
                .all(|(_, part)| part.is_some_and(|(lo, hi)| hi - lo <= 10))
        }));
        check(&[(0, 100), (100, 200), (201, 300), (290, 310)]);
        check(&[(0, 10), (0, 10), (5, 5), (3, 20)]);
        check(&[(0, 0)]);
        check(&[]);
        check(&[(5, 9), (0, 3)]);
        // A source that does not overlap is read whole.
        assert_eq!(split_spans(&[(0, 10)]), vec![vec![(0, None)]]);
        // Spans reaching the last timestamp there is.
        let pieces = split_spans(&[(i64::MAX - 5, i64::MAX), (i64::MAX - 1, i64::MAX)]);
        assert_eq!(pieces.len(), 2, "{pieces:?}");
    }

    proptest::proptest! {
        #[test]
        fn split_spans_reads_every_row_once_and_merges_every_overlap(
            spans in proptest::collection::vec((0i64..60, 0i64..20), 0..7)
        ) {
            let spans: Vec<(i64, i64)> = spans.into_iter().map(|(a, w)| (a, a + w)).collect();
            check(&spans);
        }
    }
}
