//! The database's side of `herald migrate` (`storage/migrate.rs`): chunks of rows read from a
//! redb file written into the tables of `schema_v1.sql`, one multi-row statement per chunk
//! (arrays `unnest`ed), each committed on its own.
//!
//! Every statement inserts `ON CONFLICT (primary key) DO NOTHING`: a re-run writes nothing
//! twice (counters included), and a run that stopped half-way is completed. A conflict on
//! another unique rule (`apps.uid`, an endpoint's `(app_id, uid)`, a message's
//! `(app_id, event_id)`) is a different row already in the database: the statement fails, and
//! the migration with it, rather than dropping the row. Columns are filled as `ops.rs` fills
//! them (the codecs of `session.rs`, unique keys escaped by `ops::key_text`); queue rows get
//! the default lease (no node holds them).

use tokio_postgres::types::ToSql;

use super::ops::key_text;
use super::session::{big, id, lane, n};
use super::{Store, pg_error, pool_error};
use crate::storage::StoreError;
use crate::storage::migrate::Row;

/// A connection of the pool, held for a whole migration.
pub(crate) struct Importer {
    client: deadpool_postgres::Object,
}

impl Store {
    pub(crate) async fn importer(&self) -> Result<Importer, StoreError> {
        Ok(Importer {
            client: self.pool.get().await.map_err(pool_error)?,
        })
    }
}

/// Binds each row of a chunk to `$pat` (every row of a chunk is of one table: checked first).
macro_rules! each {
    ($rows:expr, $pat:pat => $body:block) => {
        for row in $rows {
            let $pat = row else {
                unreachable!("a chunk holds rows of one table (checked)")
            };
            $body
        }
    };
}

impl Importer {
    /// Writes a chunk of rows, all of one table, in one statement; answers how many of them
    /// the database did not hold yet.
    pub(crate) async fn write(&mut self, rows: &[Row]) -> Result<u64, StoreError> {
        let Some(first) = rows.first() else {
            return Ok(0);
        };
        let table = first.table();
        if rows.iter().any(|r| r.table() != table) {
            return Err(StoreError::backend(
                "migrate",
                "a chunk mixes rows of several tables",
            ));
        }
        match first {
            Row::App { .. } => {
                let (mut ids, mut uids, mut recs) = (vec![], vec![], vec![]);
                each!(rows, Row::App { id: i, uid, rec } => {
                    ids.push(id(*i));
                    uids.push(uid.as_deref());
                    recs.push(rec.as_slice());
                });
                self.exec(
                    "INSERT INTO apps (id, uid, rec) \
                     SELECT * FROM unnest($1::bytea[], $2::text[], $3::bytea[]) \
                     ON CONFLICT (id) DO NOTHING",
                    &[&ids, &uids, &recs],
                )
                .await
            }
            Row::EventType { .. } => {
                let (mut names, mut recs) = (vec![], vec![]);
                each!(rows, Row::EventType { name, rec } => {
                    names.push(name.as_str());
                    recs.push(rec.as_slice());
                });
                self.exec(
                    "INSERT INTO event_types (name, rec) \
                     SELECT * FROM unnest($1::text[], $2::bytea[]) \
                     ON CONFLICT (name) DO NOTHING",
                    &[&names, &recs],
                )
                .await
            }
            Row::Endpoint { .. } => {
                let (mut ids, mut apps, mut uids, mut recs) = (vec![], vec![], vec![], vec![]);
                each!(rows, Row::Endpoint { id: i, app_id, uid, rec } => {
                    ids.push(id(*i));
                    apps.push(id(*app_id));
                    uids.push(uid.as_deref());
                    recs.push(rec.as_slice());
                });
                self.exec(
                    "INSERT INTO endpoints (id, app_id, uid, rec) \
                     SELECT * FROM unnest($1::bytea[], $2::bytea[], $3::text[], $4::bytea[]) \
                     ON CONFLICT (id) DO NOTHING",
                    &[&ids, &apps, &uids, &recs],
                )
                .await
            }
            Row::Trigger { .. } => {
                let (mut apps, mut ids, mut endpoints, mut recs) = (vec![], vec![], vec![], vec![]);
                each!(rows, Row::Trigger { app_id, id: i, endpoint_id, rec } => {
                    apps.push(id(*app_id));
                    ids.push(id(*i));
                    endpoints.push(id(*endpoint_id));
                    recs.push(rec.as_slice());
                });
                self.exec(
                    "INSERT INTO triggers (app_id, id, endpoint_id, rec) \
                     SELECT * FROM unnest($1::bytea[], $2::bytea[], $3::bytea[], $4::bytea[]) \
                     ON CONFLICT (app_id, id) DO NOTHING",
                    &[&apps, &ids, &endpoints, &recs],
                )
                .await
            }
            Row::Message { .. } => {
                let (mut apps, mut ids, mut event_ids, mut recs) = (vec![], vec![], vec![], vec![]);
                each!(rows, Row::Message { app_id, id: i, event_id, rec } => {
                    apps.push(id(*app_id));
                    ids.push(id(*i));
                    event_ids.push(event_id.as_deref());
                    recs.push(rec.as_slice());
                });
                self.exec(
                    "INSERT INTO messages (app_id, id, event_id, rec) \
                     SELECT * FROM unnest($1::bytea[], $2::bytea[], $3::text[], $4::bytea[]) \
                     ON CONFLICT (app_id, id) DO NOTHING",
                    &[&apps, &ids, &event_ids, &recs],
                )
                .await
            }
            Row::Delivery { .. } => {
                let (mut msgs, mut ns, mut recs) = (vec![], vec![], vec![]);
                each!(rows, Row::Delivery { msg, n: k, rec } => {
                    msgs.push(id(*msg));
                    ns.push(n(*k));
                    recs.push(rec.as_slice());
                });
                self.exec(
                    "INSERT INTO deliveries (msg_id, n, rec) \
                     SELECT * FROM unnest($1::bytea[], $2::integer[], $3::bytea[]) \
                     ON CONFLICT (msg_id, n) DO NOTHING",
                    &[&msgs, &ns, &recs],
                )
                .await
            }
            Row::Queue { .. } => {
                let (mut msgs, mut ns, mut lanes, mut dues, mut endpoints) =
                    (vec![], vec![], vec![], vec![], vec![]);
                each!(rows, Row::Queue { lane: l, due_ms, msg, n: k, endpoint } => {
                    msgs.push(id(*msg));
                    ns.push(n(*k));
                    lanes.push(lane(*l));
                    dues.push(big(*due_ms));
                    endpoints.push(id(*endpoint));
                });
                self.exec(
                    "INSERT INTO queue (msg_id, n, lane, due_ms, endpoint_id) \
                     SELECT * FROM unnest($1::bytea[], $2::integer[], $3::smallint[], \
                         $4::bigint[], $5::bytea[]) \
                     ON CONFLICT (msg_id, n) DO NOTHING",
                    &[&msgs, &ns, &lanes, &dues, &endpoints],
                )
                .await
            }
            Row::Parked { .. } => {
                let (mut endpoints, mut msgs, mut ns) = (vec![], vec![], vec![]);
                each!(rows, Row::Parked { endpoint, msg, n: k } => {
                    endpoints.push(id(*endpoint));
                    msgs.push(id(*msg));
                    ns.push(n(*k));
                });
                self.exec(
                    "INSERT INTO parked (endpoint_id, msg_id, n) \
                     SELECT * FROM unnest($1::bytea[], $2::bytea[], $3::integer[]) \
                     ON CONFLICT (endpoint_id, msg_id, n) DO NOTHING",
                    &[&endpoints, &msgs, &ns],
                )
                .await
            }
            Row::UniqueKey { .. } => {
                let (mut endpoints, mut keys, mut msgs, mut ns) = (vec![], vec![], vec![], vec![]);
                each!(rows, Row::UniqueKey { endpoint, key, msg, n: k } => {
                    endpoints.push(id(*endpoint));
                    keys.push(key_text(key));
                    msgs.push(id(*msg));
                    ns.push(n(*k));
                });
                let keys: Vec<&str> = keys.iter().map(|k| k.as_ref()).collect();
                self.exec(
                    "INSERT INTO unique_keys (endpoint_id, key, msg_id, n) \
                     SELECT * FROM unnest($1::bytea[], $2::text[], $3::bytea[], $4::integer[]) \
                     ON CONFLICT (endpoint_id, key) DO NOTHING",
                    &[&endpoints, &keys, &msgs, &ns],
                )
                .await
            }
            Row::Attempt { .. } => {
                let (mut msgs, mut ids, mut recs) = (vec![], vec![], vec![]);
                each!(rows, Row::Attempt { msg, id: i, rec } => {
                    msgs.push(id(*msg));
                    ids.push(id(*i));
                    recs.push(rec.as_slice());
                });
                self.exec(
                    "INSERT INTO attempts (msg_id, id, rec) \
                     SELECT * FROM unnest($1::bytea[], $2::bytea[], $3::bytea[]) \
                     ON CONFLICT (msg_id, id) DO NOTHING",
                    &[&msgs, &ids, &recs],
                )
                .await
            }
            Row::EndpointAttempt { .. } => {
                let (mut endpoints, mut attempts, mut msgs) = (vec![], vec![], vec![]);
                each!(rows, Row::EndpointAttempt { endpoint, attempt, msg } => {
                    endpoints.push(id(*endpoint));
                    attempts.push(id(*attempt));
                    msgs.push(id(*msg));
                });
                self.exec(
                    "INSERT INTO endpoint_attempts (endpoint_id, attempt_id, msg_id) \
                     SELECT * FROM unnest($1::bytea[], $2::bytea[], $3::bytea[]) \
                     ON CONFLICT (endpoint_id, attempt_id) DO NOTHING",
                    &[&endpoints, &attempts, &msgs],
                )
                .await
            }
            Row::Alert { .. } => {
                let (mut ids, mut recs) = (vec![], vec![]);
                each!(rows, Row::Alert { id: i, rec } => {
                    ids.push(id(*i));
                    recs.push(rec.as_slice());
                });
                self.exec(
                    "INSERT INTO alerts (id, rec) \
                     SELECT * FROM unnest($1::bytea[], $2::bytea[]) \
                     ON CONFLICT (id) DO NOTHING",
                    &[&ids, &recs],
                )
                .await
            }
            Row::Cursor { .. } => {
                let (mut names, mut positions) = (vec![], vec![]);
                each!(rows, Row::Cursor { name, position } => {
                    names.push(name.as_str());
                    positions.push(id(*position));
                });
                self.exec(
                    "INSERT INTO cursors (name, position) \
                     SELECT * FROM unnest($1::text[], $2::bytea[]) \
                     ON CONFLICT (name) DO NOTHING",
                    &[&names, &positions],
                )
                .await
            }
            Row::Task { .. } => {
                let (mut ids, mut apps, mut running, mut recs) = (vec![], vec![], vec![], vec![]);
                each!(rows, Row::Task { id: i, app_id, running: r, rec } => {
                    ids.push(id(*i));
                    apps.push(id(*app_id));
                    running.push(*r);
                    recs.push(rec.as_slice());
                });
                self.exec(
                    "INSERT INTO tasks (id, app_id, running, rec) \
                     SELECT * FROM unnest($1::bytea[], $2::bytea[], $3::boolean[], $4::bytea[]) \
                     ON CONFLICT (id) DO NOTHING",
                    &[&ids, &apps, &running, &recs],
                )
                .await
            }
            Row::Hashed { table, .. } => {
                let (mut hashes, mut recs) = (vec![], vec![]);
                each!(rows, Row::Hashed { hash, rec, .. } => {
                    hashes.push(hash.as_slice());
                    recs.push(rec.as_slice());
                });
                // The name is one of `Hashed`'s, never input.
                let sql = format!(
                    "INSERT INTO {} (hash, rec) \
                     SELECT * FROM unnest($1::bytea[], $2::bytea[]) \
                     ON CONFLICT (hash) DO NOTHING",
                    table.table()
                );
                self.exec(&sql, &[&hashes, &recs]).await
            }
            Row::User { .. } => {
                let (mut names, mut recs) = (vec![], vec![]);
                each!(rows, Row::User { username, rec } => {
                    names.push(username.as_str());
                    recs.push(rec.as_slice());
                });
                self.exec(
                    "INSERT INTO users (username, rec) \
                     SELECT * FROM unnest($1::text[], $2::bytea[]) \
                     ON CONFLICT (username) DO NOTHING",
                    &[&names, &recs],
                )
                .await
            }
            Row::MessageTimeline { .. } => {
                let (mut msgs, mut apps) = (vec![], vec![]);
                each!(rows, Row::MessageTimeline { msg, app_id } => {
                    msgs.push(id(*msg));
                    apps.push(id(*app_id));
                });
                self.exec(
                    "INSERT INTO message_timeline (msg_id, app_id) \
                     SELECT * FROM unnest($1::bytea[], $2::bytea[]) \
                     ON CONFLICT (msg_id) DO NOTHING",
                    &[&msgs, &apps],
                )
                .await
            }
            Row::EndpointDelivery { .. } => {
                let (mut endpoints, mut msgs, mut ns) = (vec![], vec![], vec![]);
                each!(rows, Row::EndpointDelivery { endpoint, msg, n: k } => {
                    endpoints.push(id(*endpoint));
                    msgs.push(id(*msg));
                    ns.push(n(*k));
                });
                self.exec(
                    "INSERT INTO endpoint_deliveries (endpoint_id, msg_id, n) \
                     SELECT * FROM unnest($1::bytea[], $2::bytea[], $3::integer[]) \
                     ON CONFLICT (endpoint_id, msg_id) DO NOTHING",
                    &[&endpoints, &msgs, &ns],
                )
                .await
            }
            Row::FailedDelivery { .. } => {
                let (mut msgs, mut ns) = (vec![], vec![]);
                each!(rows, Row::FailedDelivery { msg, n: k } => {
                    msgs.push(id(*msg));
                    ns.push(n(*k));
                });
                self.exec(
                    "INSERT INTO failed_deliveries (msg_id, n) \
                     SELECT * FROM unnest($1::bytea[], $2::integer[]) \
                     ON CONFLICT (msg_id, n) DO NOTHING",
                    &[&msgs, &ns],
                )
                .await
            }
            Row::Hourly { .. } => {
                let (mut hours, mut counters, mut counts) = (vec![], vec![], vec![]);
                each!(rows, Row::Hourly { hour, counter, count } => {
                    hours.push(big(*hour));
                    counters.push(i16::from(*counter));
                    counts.push(big(*count));
                });
                self.exec(
                    "INSERT INTO hourly (hour, counter, count) \
                     SELECT * FROM unnest($1::bigint[], $2::smallint[], $3::bigint[]) \
                     ON CONFLICT (hour, counter) DO NOTHING",
                    &[&hours, &counters, &counts],
                )
                .await
            }
            Row::Latency { .. } => {
                let (mut hours, mut buckets, mut counts) = (vec![], vec![], vec![]);
                each!(rows, Row::Latency { hour, bucket, count } => {
                    hours.push(big(*hour));
                    buckets.push(i16::from(*bucket));
                    counts.push(big(*count));
                });
                self.exec(
                    "INSERT INTO latency (hour, bucket, count) \
                     SELECT * FROM unnest($1::bigint[], $2::smallint[], $3::bigint[]) \
                     ON CONFLICT (hour, bucket) DO NOTHING",
                    &[&hours, &buckets, &counts],
                )
                .await
            }
            Row::EndpointHourly { .. } => {
                let mut c = (vec![], vec![], vec![], vec![], vec![], vec![]);
                each!(rows, Row::EndpointHourly {
                    hour,
                    endpoint,
                    succeeded,
                    failed,
                    last_failed_msg,
                    last_failed_attempt,
                } => {
                    c.0.push(big(*hour));
                    c.1.push(id(*endpoint));
                    c.2.push(big(*succeeded));
                    c.3.push(big(*failed));
                    c.4.push(id(*last_failed_msg));
                    c.5.push(id(*last_failed_attempt));
                });
                self.exec(
                    "INSERT INTO endpoint_hourly \
                     (hour, endpoint_id, succeeded, failed, last_failed_msg, last_failed_attempt) \
                     SELECT * FROM unnest($1::bigint[], $2::bytea[], $3::bigint[], $4::bigint[], \
                         $5::bytea[], $6::bytea[]) \
                     ON CONFLICT (hour, endpoint_id) DO NOTHING",
                    &[&c.0, &c.1, &c.2, &c.3, &c.4, &c.5],
                )
                .await
            }
            Row::AppDaily { .. } => {
                let (mut days, mut apps, mut messages, mut failed) =
                    (vec![], vec![], vec![], vec![]);
                each!(rows, Row::AppDaily { day, app_id, messages: m, failed: f } => {
                    days.push(big(*day));
                    apps.push(id(*app_id));
                    messages.push(big(*m));
                    failed.push(big(*f));
                });
                self.exec(
                    "INSERT INTO app_daily (day, app_id, messages, failed) \
                     SELECT * FROM unnest($1::bigint[], $2::bytea[], $3::bigint[], $4::bigint[]) \
                     ON CONFLICT (day, app_id) DO NOTHING",
                    &[&days, &apps, &messages, &failed],
                )
                .await
            }
        }
    }

    /// Runs one statement (prepared once per connection), committed on its own; answers the
    /// rows it inserted.
    async fn exec(&self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<u64, StoreError> {
        let statement = self.client.prepare_cached(sql).await.map_err(pg_error)?;
        self.client
            .execute(&statement, params)
            .await
            .map_err(pg_error)
    }
}
