//! The known-series memo of the line-protocol batchers: series whose tags were checked
//! against a table's layout, shared by the batchers (one per HTTP request) that follow.

use std::borrow::Cow;
use std::sync::Arc;

use store_api::RegionId;

/// Bound of the known-series memos' keys (a few hundred thousand series of typical lines).
pub(super) const KNOWN_SERIES_BYTES: usize = 64 << 20;

/// A table's columns as of one schema: its region and schema version. Table ids are never
/// reused, and a schema change bumps the version, so equal layouts list equal columns.
pub(super) type Layout = (RegionId, u64);

/// What a line's series resolved to, as offsets into any line that starts with its bytes.
#[derive(Debug)]
pub(super) struct KnownSeries {
    pub(super) measurement: Span,
    /// Key, value and column of each tag, in the line's order.
    pub(super) tags: Vec<(Span, Span, usize)>,
}

/// Series that the batchers of one instance accepted into tables as they existed, shared
/// by the batchers that follow: a known series' tags are checked once per table layout, not
/// once per request. What a series resolved to is kept with the layout it holds for; a
/// batcher uses it only when its table has that layout.
#[derive(Debug, Default)]
pub struct SeriesMemo {
    inner: std::sync::RwLock<SharedSeries>,
}

#[derive(Debug, Default)]
struct SharedSeries {
    known: foldhash::HashMap<Box<[u8]>, (Layout, Arc<KnownSeries>)>,
    bytes: usize,
}

impl SeriesMemo {
    pub(super) fn get(&self, series: &[u8]) -> Option<(Layout, Arc<KnownSeries>)> {
        // A poisoned lock only means a batcher panicked while publishing: the map is whole.
        let inner = self.inner.read().unwrap_or_else(|e| e.into_inner());
        inner.known.get(series).cloned()
    }

    pub(super) fn publish(&self, learned: Vec<(Box<[u8]>, Layout, Arc<KnownSeries>)>) {
        if learned.is_empty() {
            return;
        }
        let mut inner = self.inner.write().unwrap_or_else(|e| e.into_inner());
        for (series, layout, known) in learned {
            if inner.bytes + series.len() > KNOWN_SERIES_BYTES {
                inner.known.clear();
                inner.bytes = 0;
            }
            let len = series.len();
            if inner.known.insert(series, (layout, known)).is_none() {
                inner.bytes += len;
            }
        }
    }

    /// Series held.
    pub fn len(&self) -> usize {
        self.inner
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .known
            .len()
    }

    /// Whether no series is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A byte range of a line.
pub(super) type Span = (usize, usize);

/// Where `part` (borrowed from `text`) lies inside `text`.
pub(super) fn span_in(text: &str, part: &str) -> Option<Span> {
    let start = (part.as_ptr() as usize).checked_sub(text.as_ptr() as usize)?;
    let end = start + part.len();
    (text.get(start..end) == Some(part)).then_some((start, end))
}

/// The text of `span` in `text`.
pub(super) fn at(text: &str, (start, end): Span) -> Cow<'_, str> {
    Cow::Borrowed(text.get(start..end).unwrap_or_default())
}
