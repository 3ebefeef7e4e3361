//! Keyset pagination: never an offset scan. Shared by both backends.
//!
//! A page is asked for with a cursor (first page, strictly after an id, or strictly before
//! one, in display order) and answers the items plus whether the direction travelled has more.
//! Items that arrive while a client pages cannot shift a page, because cursors are keys.

use std::ops::RangeInclusive;

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
pub const SCAN_MAX: usize = 20_000;

/// Which keys a page walks (`from..=to`), which way, and whether the result is flipped to
/// display order; `None` when nothing can be on the page.
pub fn plan(query: &PageQuery) -> Option<(u128, u128, bool, bool)> {
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
