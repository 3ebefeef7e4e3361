//! Keyset pagination over tables keyed by (prefix, id): never an offset scan.
//!
//! A page is asked for with a cursor (first page, strictly after an id, or strictly before
//! one, in display order) and answers the items plus whether the direction travelled has more.
//! Items that arrive while a client pages cannot shift a page, because cursors are keys.

use std::ops::RangeInclusive;

use redb::{ReadableTable, Value};

use super::StoreError;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cursor {
    First,
    /// Items that come after this key in display order (the next page).
    After(u128),
    /// Items that come before this key in display order (the previous page).
    Before(u128),
}

#[derive(Clone, Debug)]
pub struct PageQuery {
    pub cursor: Cursor,
    pub limit: usize,
    /// Newest (largest key) first.
    pub descending: bool,
    /// Only keys inside this range (time windows become id ranges, ids being ULIDs).
    pub within: RangeInclusive<u128>,
}

impl PageQuery {
    pub fn new(cursor: Cursor, limit: usize, descending: bool) -> Self {
        PageQuery {
            cursor,
            limit,
            descending,
            within: 0..=u128::MAX,
        }
    }
}

#[derive(Clone, Debug)]
pub struct Page<T> {
    pub items: Vec<T>,
    /// No more items in the direction travelled.
    pub done: bool,
}

impl<T> Page<T> {
    pub fn map<U>(self, f: impl FnMut(T) -> U) -> Page<U> {
        Page {
            items: self.items.into_iter().map(f).collect(),
            done: self.done,
        }
    }
}

/// How many keys a filtered page may pass over before it answers with what it has. Bounds the
/// work of one request whatever the filter.
const SCAN_MAX: usize = 20_000;

/// Pages through the keys `(prefix, id)` of `table`, calling `keep` on each id and value; `keep`
/// answers `None` to filter an item out.
pub(super) fn page_by_prefix<T, V, R>(
    table: &T,
    prefix: u128,
    query: &PageQuery,
    mut keep: impl FnMut(u128, V::SelfType<'_>) -> Result<Option<R>, StoreError>,
) -> Result<Page<R>, StoreError>
where
    T: ReadableTable<(u128, u128), V>,
    V: Value + 'static,
{
    let Some((from, to, forward, flip)) = plan(query) else {
        return Ok(Page {
            items: Vec::new(),
            done: true,
        });
    };
    let range = table.range((prefix, from)..=(prefix, to))?;
    let mut items = Vec::with_capacity(query.limit.min(256) + 1);
    let mut scanned = 0usize;
    let mut done = true;
    let mut visit = |entry: Result<
        (
            redb::AccessGuard<'_, (u128, u128)>,
            redb::AccessGuard<'_, V>,
        ),
        redb::StorageError,
    >|
     -> Result<bool, StoreError> {
        let (k, v) = entry?;
        let (_, id) = k.value();
        if let Some(item) = keep(id, v.value())? {
            items.push(item);
        }
        scanned += 1;
        Ok(items.len() > query.limit || scanned >= SCAN_MAX)
    };
    if forward {
        for entry in range {
            if visit(entry)? {
                break;
            }
        }
    } else {
        for entry in range.rev() {
            if visit(entry)? {
                break;
            }
        }
    }
    if items.len() > query.limit {
        items.truncate(query.limit);
        done = false;
    } else if scanned >= SCAN_MAX {
        done = false;
    }
    if flip {
        items.reverse();
    }
    Ok(Page { items, done })
}

/// Which keys a page walks (`from..=to`), which way, and whether the result is flipped to
/// display order; `None` when nothing can be on the page.
fn plan(query: &PageQuery) -> Option<(u128, u128, bool, bool)> {
    let (lo, hi) = (*query.within.start(), *query.within.end());
    // Which part of the range to walk, which way, and whether to flip the result.
    let (from, to, forward, flip) = match (query.cursor, query.descending) {
        (Cursor::First, false) => (lo, hi, true, false),
        (Cursor::First, true) => (lo, hi, false, false),
        (Cursor::After(k), false) => (k.saturating_add(1).max(lo), hi, true, false),
        (Cursor::After(k), true) => (lo, k.saturating_sub(1).min(hi), false, false),
        (Cursor::Before(k), false) => (lo, k.saturating_sub(1).min(hi), false, true),
        (Cursor::Before(k), true) => (k.saturating_add(1).max(lo), hi, true, true),
    };
    let empty_cursor_edge = match query.cursor {
        Cursor::After(k) => (!query.descending && k == u128::MAX) || (query.descending && k == 0),
        Cursor::Before(k) => (!query.descending && k == 0) || (query.descending && k == u128::MAX),
        Cursor::First => false,
    };
    (from <= to && !empty_cursor_edge).then_some((from, to, forward, flip))
}

/// `page_by_prefix` for a table keyed by id alone.
pub(super) fn page_by_id<T, V, R>(
    table: &T,
    query: &PageQuery,
    mut keep: impl FnMut(u128, V::SelfType<'_>) -> Result<Option<R>, StoreError>,
) -> Result<Page<R>, StoreError>
where
    T: ReadableTable<u128, V>,
    V: Value + 'static,
{
    let Some((from, to, forward, flip)) = plan(query) else {
        return Ok(Page {
            items: Vec::new(),
            done: true,
        });
    };
    let range = table.range(from..=to)?;
    let entries: Box<dyn Iterator<Item = _>> = if forward {
        Box::new(range)
    } else {
        Box::new(range.rev())
    };
    let mut items = Vec::new();
    let mut scanned = 0usize;
    for entry in entries {
        let (k, v) = entry?;
        if let Some(item) = keep(k.value(), v.value())? {
            items.push(item);
        }
        scanned += 1;
        if items.len() > query.limit || scanned >= SCAN_MAX {
            break;
        }
    }
    let done = items.len() <= query.limit && scanned < SCAN_MAX;
    items.truncate(query.limit);
    if flip {
        items.reverse();
    }
    Ok(Page { items, done })
}
