//! The one writer: a thread that owns every redb write transaction and commits in groups.
//!
//! Callers send a job and wait; the thread takes the first waiting job plus whatever else is
//! already queued (up to `writer_batch_max`), runs them all in one write transaction, commits
//! once with `Durability::Immediate`, and only then answers each caller. One fsync thus
//! acknowledges a whole batch, which is what makes durable ingest fast.
//!
//! A job fails alone. Jobs should check, then write; but one that fails after writing, or
//! panics (caught with `catch_unwind`), may have left half its rows in the batch's
//! transaction. The writer then abandons that transaction (aborted, never committed), takes the
//! job out of the batch with its own error (`StoreError::Panicked` for a panic), and runs the
//! rest of the batch again in a new transaction; the other callers never see the fault. This
//! costs nothing while no job fails, which is why it is chosen over a savepoint per job: redb
//! refuses a savepoint in a transaction that has opened a table, so there is none to take
//! between two jobs of one batch.
//!
//! Running a job again is why a job is an `Fn`, not an `FnOnce`: its closure keeps its inputs
//! and reads them by reference, so each run starts from the same inputs and sees the same
//! database (the batch's jobs before it, minus the failed ones). A job must therefore have no
//! effect outside its transaction; its answer is the one from the run that commits. Ids made
//! in the writer stay unique and ordered: the generator only moves forward, and the ids of an
//! abandoned run are never committed.
//!
//! Must never: run on an async thread, answer a caller before the commit is durable, or commit
//! a transaction in which a job failed.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::time::Instant;

use redb::{Database, Durability};
use tokio::sync::{mpsc, oneshot};

use super::{StoreError, Writer};
use crate::storage::jobs::{Job, Msg, WriterStats, panic_text};

/// The database handle shared by readers; the writer empties it to close the file after an
/// I/O failure and fills it again when the file reopens.
pub(super) type Slot = Arc<std::sync::RwLock<Option<Arc<Database>>>>;

/// Longest wait for reads in progress to let go of a failed database before reopening it.
const RELEASE_WAIT: std::time::Duration = std::time::Duration::from_secs(5);
/// Pause before trying again to reopen a database that would not open (disk still full).
const REOPEN_PAUSE: std::time::Duration = std::time::Duration::from_millis(200);
/// Reopen tries right after a failure; later ones happen when the next write arrives.
const REOPEN_TRIES: usize = 25;

pub(super) fn spawn(
    slot: Slot,
    path: std::path::PathBuf,
    cache_bytes: usize,
    mut rx: mpsc::Receiver<Msg>,
    batch_max: usize,
    stats: Arc<WriterStats>,
    metrics: Arc<crate::metrics::Metrics>,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new()
        .name("herald-writer".into())
        .spawn(move || {
            let mut batch: Vec<Box<dyn Job>> = Vec::with_capacity(batch_max);
            let mut failed: Vec<Box<dyn Job>> = Vec::new();
            let mut ids = ulid::Generator::new();
            let mut stop: Option<oneshot::Sender<()>> = None;
            let mut db: Option<Arc<Database>> = slot.read().expect("not poisoned").clone();
            let beat = metrics.heartbeats.writer(); // ticks while it waits; dead when dropped
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
                if db.is_none() {
                    db = reopen(&slot, &path, cache_bytes);
                }
                let Some(current) = db.clone() else {
                    // Still not open (the disk may still be full): refuse, nothing was stored.
                    for job in batch.drain(..) {
                        job.complete(Err(StoreError::Closed));
                    }
                    std::thread::sleep(REOPEN_PAUSE);
                    continue;
                };
                let started = Instant::now();
                let run = catch_unwind(AssertUnwindSafe(|| {
                    run_batch(&current, &mut batch, &mut failed, &mut ids, &metrics)
                }));
                // A panic outside any job (in redb, or in the writer's own code): the
                // transaction was dropped while unwinding, so nothing of the batch is
                // committed, but redb's state is unknown: reopen the file as after an I/O
                // failure.
                let (committed, broken) = match run {
                    Ok(committed) => (committed, false),
                    Err(panic) => {
                        tracing::error!(cause = panic_text(&*panic), "the writer panicked");
                        (Err(StoreError::Panicked), true)
                    }
                };
                if let Err(e) = &committed {
                    tracing::error!(error = %e, jobs = batch.len(), "write batch failed");
                }
                let jobs = batch.len() + failed.len();
                metrics.writer_batch(jobs, started.elapsed());
                use std::sync::atomic::Ordering::Relaxed;
                stats.batches.fetch_add(1, Relaxed);
                stats.jobs.fetch_add(jobs as u64, Relaxed);
                stats
                    .commit_micros
                    .fetch_add(started.elapsed().as_micros() as u64, Relaxed);
                // Taken out of the batch, each with its own error, whatever became of the rest.
                for job in failed.drain(..) {
                    job.complete(Ok(()));
                }
                if committed.is_err() && (broken || needs_reopen(&current)) {
                    // redb refuses every transaction after an I/O failure (a full disk) until
                    // the file is closed and opened again: close it and reopen it before the
                    // failed batch is answered, so a caller who sees the error and then reads
                    // finds the database open. Nothing acknowledged is affected: the failed
                    // batch is refused.
                    tracing::warn!("database I/O failed; closing it to reopen");
                    drop(current);
                    db = None;
                    release(&slot);
                    // Bounded, so neither the failed callers nor a stop request wait long; if
                    // it still does not open, the next batch tries again.
                    for _ in 0..REOPEN_TRIES {
                        db = reopen(&slot, &path, cache_bytes);
                        if db.is_some() {
                            break;
                        }
                        std::thread::sleep(REOPEN_PAUSE);
                    }
                }
                for job in batch.drain(..) {
                    job.complete(committed.clone());
                }
            }
            // Jobs sent after the stop are answered `Closed` through their dropped replies.
            rx.close();
            drop(db);
            if let Some(done) = stop {
                let _ = done.send(());
            }
            tracing::debug!("writer stopped");
        })
}

/// Whether the database refuses new transactions because an I/O error happened.
fn needs_reopen(db: &Database) -> bool {
    use redb::{StorageError, TransactionError};
    match db.begin_write() {
        Ok(tx) => {
            let _ = tx.abort();
            false
        }
        Err(TransactionError::Storage(StorageError::PreviousIo | StorageError::Io(_))) => true,
        Err(_) => false,
    }
}

/// Takes the database out of the shared slot and waits (bounded) until every reader has let go,
/// so dropping it closes the file.
fn release(slot: &Slot) {
    let Some(mut db) = slot.write().expect("not poisoned").take() else {
        return;
    };
    let deadline = Instant::now() + RELEASE_WAIT;
    loop {
        match Arc::try_unwrap(db) {
            Ok(db) => {
                drop(db);
                return;
            }
            Err(shared) if Instant::now() < deadline => {
                db = shared;
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            Err(_) => {
                tracing::warn!("reads still hold the failed database; it closes when they end");
                return;
            }
        }
    }
}

/// Opens the database file again and shares it with readers.
fn reopen(slot: &Slot, path: &std::path::Path, cache_bytes: usize) -> Option<Arc<Database>> {
    match super::open_file(path, cache_bytes) {
        Ok(db) => {
            let db = Arc::new(db);
            *slot.write().expect("not poisoned") = Some(db.clone());
            tracing::info!("database reopened");
            Some(db)
        }
        Err(e) => {
            tracing::warn!(error = %e, "database does not open yet");
            None
        }
    }
}

/// Runs the batch until it commits, taking out each job that fails after writing or panics
/// (into `failed`, holding its own error) and running the others again in a new transaction.
fn run_batch(
    db: &Database,
    batch: &mut Vec<Box<dyn Job>>,
    failed: &mut Vec<Box<dyn Job>>,
    ids: &mut ulid::Generator,
    metrics: &crate::metrics::Metrics,
) -> Result<(), StoreError> {
    while !batch.is_empty() {
        let mut tx = db.begin_write()?;
        tx.set_durability(Durability::Immediate)
            .map_err(|e| StoreError::backend("durability", e))?;
        let faulty = {
            let mut w = Writer {
                tx: super::hot::WriteTx::new(&tx),
                dirty: false,
                ids: &mut *ids,
                counters: Default::default(),
                routing: Default::default(),
                known: Default::default(),
            };
            let faulty = run_jobs(&mut w, batch, metrics);
            if faulty.is_none() {
                // The jobs' answers are already decided; a failure here fails the whole batch.
                w.flush_counters()?;
            }
            faulty
        };
        let Some(at) = faulty else {
            tx.commit()?;
            return Ok(());
        };
        failed.push(batch.remove(at));
        // The failed job may have written part of its rows: its transaction is abandoned whole,
        // with the other jobs' rows, which they write again in the next run.
        tx.abort()?;
        if !batch.is_empty() {
            metrics.writer_batch_rerun();
        }
    }
    Ok(())
}

/// Runs each job in turn; answers where the first that failed after writing or panicked is.
fn run_jobs(
    w: &mut Writer<'_>,
    batch: &mut [Box<dyn Job>],
    metrics: &crate::metrics::Metrics,
) -> Option<usize> {
    for (at, job) in batch.iter_mut().enumerate() {
        // AssertUnwindSafe is sound here because nothing a panicking job could leave half-done
        // is used again: its rows, the batch's caches and counter sums live in this `Writer`
        // and its transaction, which the caller drops and aborts (never commits); the job
        // itself is answered `Panicked` and never runs again. The id generator only moves
        // forward, whatever the panic interrupted.
        w.dirty = false;
        match catch_unwind(AssertUnwindSafe(|| job.apply(w))) {
            Ok(true) => {}
            // Failed before writing anything: its answer is its error, the batch goes on.
            Ok(false) if !w.dirty => {}
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
