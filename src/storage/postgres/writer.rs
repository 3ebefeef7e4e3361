//! This node's one writer: a thread that runs batches of write jobs in one PostgreSQL
//! transaction each and commits once (group commit, as `redb/writer.rs`; read that module's
//! notes first: the rules are the same).
//!
//! A job fails alone. One that fails after writing, or panics, may have left half its rows in
//! the batch's transaction: the writer rolls the transaction back, takes the job out with its
//! own error, and runs the rest again in a new one. This is chosen over a savepoint per job:
//! savepoints cost a round trip each, and PostgreSQL slows every snapshot once a transaction
//! holds more than 64 subtransactions, which a batch of a few hundred jobs would.
//!
//! The writer has a connection of its own, driven by a runtime of its own on this thread, so
//! its statements never wait for a busy async thread to read their answers. When the database
//! goes away the batch fails (`Unreachable`: nothing of it committed) and the next batch
//! connects again.
//!
//! Must never: run on an async thread, answer a caller before the commit is durable, or commit
//! a transaction in which a job failed.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::time::Instant;

use tokio::sync::mpsc;

use super::session::Statements;
use super::{Txn, connect, pg_error};
use crate::storage::StoreError;
use crate::storage::jobs::{Job, Msg, WriterStats, panic_text};

/// Pause before connecting again after the database could not be reached.
const RECONNECT_PAUSE: std::time::Duration = std::time::Duration::from_millis(200);

pub(super) fn spawn(
    config: tokio_postgres::Config,
    mut rx: mpsc::Receiver<Msg>,
    batch_max: usize,
    stats: Arc<WriterStats>,
    metrics: Arc<crate::metrics::Metrics>,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    std::thread::Builder::new()
        .name("herald-writer".into())
        .spawn(move || {
            let mut batch: Vec<Box<dyn Job>> = Vec::with_capacity(batch_max);
            let mut failed: Vec<Box<dyn Job>> = Vec::new();
            let mut ids = ulid::Generator::new();
            let mut stop = None;
            let mut client: Option<(tokio_postgres::Client, Statements)> = None;
            let beat = metrics.heartbeats.writer();
            while stop.is_none() {
                match beat.recv(&mut rx) {
                    Some(Msg::Job(job)) => batch.push(job),
                    Some(Msg::Stop(done)) => stop = Some(done),
                    None => break,
                }
                while batch.len() < batch_max && stop.is_none() {
                    match rx.try_recv() {
                        Ok(Msg::Job(job)) => batch.push(job),
                        Ok(Msg::Stop(done)) => stop = Some(done),
                        Err(_) => break,
                    }
                }
                if batch.is_empty() {
                    continue;
                }
                if client.is_none() {
                    match rt.block_on(connect(&config)) {
                        Ok(c) => client = Some((c, Default::default())),
                        Err(e) => {
                            tracing::warn!(error = %e, "the writer cannot reach the database");
                            for job in batch.drain(..) {
                                job.complete(Err(e.clone()));
                            }
                            std::thread::sleep(RECONNECT_PAUSE);
                            continue;
                        }
                    }
                }
                let (conn, statements) = client.as_mut().expect("connected above");
                let started = Instant::now();
                let run = catch_unwind(AssertUnwindSafe(|| {
                    run_batch(
                        &rt,
                        conn,
                        statements,
                        &mut batch,
                        &mut failed,
                        &mut ids,
                        &metrics,
                    )
                }));
                let committed = match run {
                    Ok(committed) => committed,
                    Err(panic) => {
                        tracing::error!(cause = panic_text(&*panic), "the writer panicked");
                        Err(StoreError::Panicked)
                    }
                };
                if let Err(e) = &committed {
                    tracing::error!(error = %e, jobs = batch.len(), "write batch failed");
                    // The connection's state is unknown after a failed batch (it may be gone,
                    // or inside a transaction a panic left open): take a fresh one next time.
                    client = None;
                }
                let jobs = batch.len() + failed.len();
                metrics.writer_batch(jobs, started.elapsed());
                use std::sync::atomic::Ordering::Relaxed;
                stats.batches.fetch_add(1, Relaxed);
                stats.jobs.fetch_add(jobs as u64, Relaxed);
                stats
                    .commit_micros
                    .fetch_add(started.elapsed().as_micros() as u64, Relaxed);
                for job in failed.drain(..) {
                    job.complete(Ok(()));
                }
                for job in batch.drain(..) {
                    job.complete(committed.clone());
                }
            }
            rx.close();
            drop(client);
            if let Some(done) = stop {
                let _ = done.send(());
            }
            tracing::debug!("writer stopped");
        })
}

/// Runs the batch until it commits, taking out each job that fails after writing or panics
/// (into `failed`, holding its own error) and running the others again in a new transaction.
fn run_batch(
    rt: &tokio::runtime::Runtime,
    conn: &mut tokio_postgres::Client,
    statements: &Statements,
    batch: &mut Vec<Box<dyn Job>>,
    failed: &mut Vec<Box<dyn Job>>,
    ids: &mut ulid::Generator,
    metrics: &crate::metrics::Metrics,
) -> Result<(), StoreError> {
    while !batch.is_empty() {
        let tx = rt.block_on(conn.transaction()).map_err(pg_error)?;
        let faulty = {
            let mut w = Txn::writing(&tx, statements, rt, ids);
            let faulty = run_jobs(&mut w, batch, metrics);
            if faulty.is_none() {
                w.flush_counters()?;
            }
            faulty
        };
        let Some(at) = faulty else {
            rt.block_on(tx.commit()).map_err(pg_error)?;
            return Ok(());
        };
        failed.push(batch.remove(at));
        rt.block_on(tx.rollback()).map_err(pg_error)?;
        if !batch.is_empty() {
            metrics.writer_batch_rerun();
        }
    }
    Ok(())
}

/// Runs each job in turn; answers where the first that failed after writing or panicked is.
fn run_jobs(
    w: &mut Txn<'_>,
    batch: &mut [Box<dyn Job>],
    metrics: &crate::metrics::Metrics,
) -> Option<usize> {
    for (at, job) in batch.iter_mut().enumerate() {
        w.dirty = false;
        // AssertUnwindSafe: as in redb/writer.rs, what a panicking job leaves half-done lives in
        // this session and its transaction, which the caller rolls back.
        match catch_unwind(AssertUnwindSafe(|| job.apply(w))) {
            // A statement failed, though the job went on: the transaction refuses everything
            // now. Nothing of the job can be stored; it answers so.
            // A statement failed, though the job went on: the transaction refuses everything
            // now, and nothing of the job can be stored. It answers with that statement's
            // error (a lost connection stays `Unreachable`).
            Ok(true) if w.broken().is_some() => {
                job.fail(w.broken().expect("just seen"));
                return Some(at);
            }
            Ok(true) => {}
            Ok(false) if !w.dirty && w.broken().is_none() => {}
            Ok(false) => return Some(at),
            Err(panic) => {
                tracing::error!(cause = panic_text(&*panic), "a write job panicked");
                metrics.writer_job_panicked();
                job.fail(StoreError::Panicked);
                return Some(at);
            }
        }
    }
    None
}
