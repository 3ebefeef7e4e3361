//! Keyset pagination over redb tables keyed by (prefix, id) or id (the query and page types
//! are storage's, `storage/pages.rs`).

use redb::{ReadableTable, Value};

use super::StoreError;
use crate::storage::pages::{Page, PageQuery, plan};

use crate::storage::pages::SCAN_MAX;

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
