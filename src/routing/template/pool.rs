//! The threads tenants' templates run on outside the writer: previews, trigger saves and
//! delivery bodies.
//!
//! Not the async runtimes' workers (a render may take up to `template_render_ms`), and not
//! tokio's blocking pool either: that pool grows to hundreds of threads, and the allocator
//! keeps a heap per thread, so a stream of renders, each within its memory bound, could leave
//! memory resident on every one of them. A fixed pair of threads keeps both the CPU and the
//! memory tenants' templates can take at once to two evaluations' bounds.
//!
//! Owns: the threads and their queue. Must never: run anything but template evaluations.

use std::sync::mpsc;
use std::sync::{LazyLock, Mutex};

type Job = Box<dyn FnOnce() + Send>;

/// Threads evaluating templates at once.
pub const THREADS: usize = 2;

static QUEUE: LazyLock<Mutex<mpsc::Sender<Job>>> = LazyLock::new(|| {
    let (tx, rx) = mpsc::channel::<Job>();
    let rx = std::sync::Arc::new(Mutex::new(rx));
    for n in 0..THREADS {
        let rx = rx.clone();
        std::thread::Builder::new()
            .name(format!("herald-render-{n}"))
            .spawn(move || {
                loop {
                    let job = match rx.lock().unwrap_or_else(|e| e.into_inner()).recv() {
                        Ok(job) => job,
                        Err(_) => return,
                    };
                    // A job that panics fails alone; its caller sees its answer dropped.
                    let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(job));
                }
            })
            .expect("render thread starts");
    }
    Mutex::new(tx)
});

/// Runs `work` on a render thread and waits for it without blocking the caller's runtime;
/// `None` if it panicked.
pub async fn run<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> Option<T> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let job: Job = Box::new(move || {
        let _ = tx.send(work());
    });
    QUEUE
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .send(job)
        .ok()?;
    rx.await.ok()
}
