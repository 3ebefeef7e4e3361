//! Write jobs: what a caller of `Store::write` hands a backend's writer, and how its answer
//! comes back. Shared by both backends, whose writers differ only in how they run a batch of
//! jobs in one transaction and commit it (redb: `redb/writer.rs`; PostgreSQL:
//! `postgres/writer.rs`).
//!
//! A job is an `Fn`, not an `FnOnce`: a writer may run it again when another job of its batch
//! fails (redb has no savepoints to undo one job alone), so its closure keeps its inputs and
//! reads them by reference. A job must have no effect outside its transaction.
//!
//! Must never: answer a caller before the writer says the batch's fate is known.

use tokio::sync::{mpsc, oneshot};

use super::{StoreError, Writer};

/// A unit of work for a writer thread.
pub(crate) trait Job: Send {
    /// Runs against the batch's transaction; may run again in a later transaction of the same
    /// batch. Answers whether it succeeded (a failed job's error is its answer; the writer
    /// decides whether what it wrote must be undone).
    fn apply(&mut self, w: &mut Writer<'_>) -> bool;
    /// Makes `e` the job's answer, whatever `apply` answered (it panicked, or its transaction
    /// broke under it).
    fn fail(&mut self, e: StoreError);
    /// Answers the caller once the batch's fate is known: the job's own answer if the batch
    /// committed (or the job was taken out of it), else the batch's error.
    fn complete(self: Box<Self>, committed: Result<(), StoreError>);
}

/// A closure's job. Its error type `E` is the caller's (a `ServiceError` for a rule the job
/// found broken, say); the store's own failures reach it through `From<StoreError>`.
struct FnJob<F, T, E> {
    f: F,
    result: Option<Result<T, E>>,
    reply: oneshot::Sender<Result<T, E>>,
}

impl<F, T, E> Job for FnJob<F, T, E>
where
    F: Fn(&mut Writer<'_>) -> Result<T, E> + Send,
    T: Send,
    E: From<StoreError> + Send,
{
    fn apply(&mut self, w: &mut Writer<'_>) -> bool {
        let result = (self.f)(w);
        let ok = result.is_ok();
        self.result = Some(result);
        ok
    }

    fn fail(&mut self, e: StoreError) {
        self.result = Some(Err(e.into()));
    }

    fn complete(self: Box<Self>, committed: Result<(), StoreError>) {
        let answer = match committed {
            Ok(()) => self
                .result
                .unwrap_or_else(|| Err(StoreError::Aborted.into())),
            Err(e) => Err(e.into()),
        };
        // The caller may have gone away (client disconnected); the work is committed anyway.
        let _ = self.reply.send(answer);
    }
}

/// Counters a writer keeps for metrics and benchmarks.
#[derive(Default)]
pub struct WriterStats {
    pub batches: std::sync::atomic::AtomicU64,
    pub jobs: std::sync::atomic::AtomicU64,
    pub commit_micros: std::sync::atomic::AtomicU64,
}

/// What a writer thread receives.
pub(crate) enum Msg {
    Job(Box<dyn Job>),
    /// Finish what was received before, let go of the database, and end the thread.
    Stop(oneshot::Sender<()>),
}

/// A write job for a writer's queue, and where its answer comes back.
fn job<T, E, F>(f: F) -> (Msg, oneshot::Receiver<Result<T, E>>)
where
    F: Fn(&mut Writer<'_>) -> Result<T, E> + Send + 'static,
    T: Send + 'static,
    E: From<StoreError> + Send + 'static,
{
    let (reply, answer) = oneshot::channel();
    let job = Box::new(FnJob {
        f,
        result: None,
        reply,
    });
    (Msg::Job(job), answer)
}

/// Sends `f` to a writer, waiting for room in its queue, and waits for its answer.
pub(crate) async fn send<T, E, F>(jobs: &mpsc::Sender<Msg>, f: F) -> Result<T, E>
where
    F: Fn(&mut Writer<'_>) -> Result<T, E> + Send + 'static,
    T: Send + 'static,
    E: From<StoreError> + Send + 'static,
{
    let (job, answer) = job(f);
    jobs.send(job).await.map_err(|_| StoreError::Closed)?;
    answer.await.map_err(|_| StoreError::Closed)?
}

/// Sends `f` to a writer unless its queue is full (then `Busy` at once), and waits for its
/// answer.
pub(crate) async fn send_or_shed<T, E, F>(jobs: &mpsc::Sender<Msg>, f: F) -> Result<T, E>
where
    F: Fn(&mut Writer<'_>) -> Result<T, E> + Send + 'static,
    T: Send + 'static,
    E: From<StoreError> + Send + 'static,
{
    let (job, answer) = job(f);
    match jobs.try_send(job) {
        Ok(()) => {}
        Err(mpsc::error::TrySendError::Full(_)) => return Err(StoreError::Busy.into()),
        Err(mpsc::error::TrySendError::Closed(_)) => return Err(StoreError::Closed.into()),
    }
    answer.await.map_err(|_| StoreError::Closed)?
}

/// Asks a writer to finish and stop, and waits until it has.
pub(crate) async fn stop(jobs: &mpsc::Sender<Msg>) {
    let (done, stopped) = oneshot::channel();
    if jobs.send(Msg::Stop(done)).await.is_ok() {
        let _ = stopped.await;
    }
}

/// Jobs sent to a writer and not yet taken into a batch.
pub(crate) fn waiting(jobs: &mpsc::Sender<Msg>) -> usize {
    jobs.max_capacity() - jobs.capacity()
}

/// What a panic said, when it said it with a string.
pub(crate) fn panic_text(panic: &(dyn std::any::Any + Send)) -> &str {
    panic
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| panic.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("(no message)")
}
