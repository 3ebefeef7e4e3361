//! The one writer: a thread that owns every redb write transaction and commits in groups.
//!
//! Callers send a job and wait; the thread takes the first waiting job plus whatever else is
//! already queued (up to `writer_batch_max`), runs them all in one write transaction, commits
//! once with `Durability::Immediate`, and only then answers each caller. One fsync thus
//! acknowledges a whole batch, which is what makes durable ingest fast.
//!
//! The contract for jobs: a job that returns an error must not have written anything (check,
//! then write). A job that breaks this (it wrote, then failed) aborts the whole transaction and
//! every job of the batch is answered `StoreError::Aborted`; nothing half-done is committed.
//!
//! Must never: run on an async thread, or answer a caller before the commit is durable.

use std::sync::Arc;
use std::time::Instant;

use redb::{Database, Durability};
use tokio::sync::{mpsc, oneshot};

use super::{StoreError, Writer};

/// A unit of work for the writer thread.
pub(super) trait Job: Send {
    /// Runs against the batch's transaction. Returns false when the job failed after writing.
    fn apply(&mut self, w: &mut Writer<'_>) -> bool;
    /// Answers the caller once the batch's fate is known.
    fn complete(self: Box<Self>, committed: Result<(), StoreError>);
}

pub(super) struct FnJob<F, T> {
    pub f: Option<F>,
    pub result: Option<Result<T, StoreError>>,
    pub reply: oneshot::Sender<Result<T, StoreError>>,
}

impl<F, T> Job for FnJob<F, T>
where
    F: FnOnce(&mut Writer<'_>) -> Result<T, StoreError> + Send,
    T: Send,
{
    fn apply(&mut self, w: &mut Writer<'_>) -> bool {
        let f = self.f.take().expect("a job is applied once");
        w.dirty = false;
        let result = f(w);
        let clean = result.is_ok() || !w.dirty;
        self.result = Some(result);
        clean
    }

    fn complete(self: Box<Self>, committed: Result<(), StoreError>) {
        let answer = match committed {
            Ok(()) => self.result.unwrap_or(Err(StoreError::Aborted)),
            Err(e) => Err(e),
        };
        // The caller may have gone away (client disconnected); the work is committed anyway.
        let _ = self.reply.send(answer);
    }
}

/// Counters the writer keeps for metrics and benchmarks.
#[derive(Default)]
pub struct WriterStats {
    pub batches: std::sync::atomic::AtomicU64,
    pub jobs: std::sync::atomic::AtomicU64,
    pub commit_micros: std::sync::atomic::AtomicU64,
}

/// What the writer thread receives.
pub(super) enum Msg {
    Job(Box<dyn Job>),
    /// Finish what was received before, drop the database handle, and end the thread.
    Stop(oneshot::Sender<()>),
}

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
                let committed = run_batch(&current, &mut batch, &mut ids);
                if let Err(e) = &committed {
                    tracing::error!(error = %e, jobs = batch.len(), "write batch failed");
                }
                metrics.writer_batch(batch.len(), started.elapsed());
                use std::sync::atomic::Ordering::Relaxed;
                stats.batches.fetch_add(1, Relaxed);
                stats.jobs.fetch_add(batch.len() as u64, Relaxed);
                stats
                    .commit_micros
                    .fetch_add(started.elapsed().as_micros() as u64, Relaxed);
                if committed.is_err() && needs_reopen(&current) {
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

fn run_batch(
    db: &Database,
    batch: &mut [Box<dyn Job>],
    ids: &mut ulid::Generator,
) -> Result<(), StoreError> {
    let mut tx = db.begin_write()?;
    tx.set_durability(Durability::Immediate)
        .map_err(|e| StoreError::Db(e.to_string()))?;
    let mut all_clean = true;
    {
        let mut w = Writer {
            tx: super::hot::WriteTx::new(&tx),
            dirty: false,
            ids,
            counters: Default::default(),
            routing: Default::default(),
            known: Default::default(),
        };
        for job in batch.iter_mut() {
            if !job.apply(&mut w) {
                all_clean = false;
                break;
            }
        }
        if all_clean {
            // The jobs' answers are already decided; a failure here fails the whole batch.
            w.flush_counters()?;
        }
    }
    if !all_clean {
        tx.abort()?;
        return Err(StoreError::Aborted);
    }
    tx.commit()?;
    Ok(())
}
