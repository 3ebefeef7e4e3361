//! Background tasks: recover and replay-missing over an endpoint's history, worked through in
//! small chunks, and read back (Svix's `/background-task`).
//!
//! Starting one records it (the 202 follows that commit) and spawns its runner. The runner
//! repeats a step: read the next chunk from the task's cursor in a read transaction (ids and
//! small fields, never a payload or a stored response), then one writer job that checks each
//! pick again, queues it, and moves the cursor past the chunk, all in one commit. So the
//! writer is held for one chunk at a time and other tenants' jobs go between chunks; a pick
//! checked again in the writer cannot be queued twice by two tasks racing; and after a restart
//! (`resume_tasks`) a running task carries on from its last commit, neither repeating nor
//! skipping a message. The previews the dashboard shows walk the same selection, bounded.
//!
//! Owns: what recover and replay select, and a task's life. Must never: hold more than one
//! chunk of ids in memory, or leave a task running that no runner works on.

use std::time::Duration;

use super::{
    ListPage, ListParams, Result, Service, ServiceError, find_app, find_endpoint, list_page,
};
use crate::model::*;
use crate::routing;
use crate::storage::{MessageHead, Read, StoreError};

/// Longest window recover and replay-missing accept (Svix: 14 days, with 5 minutes' grace).
pub const WINDOW_MAX_US: Micros = 14 * 86_400 * 1_000_000 + 300 * 1_000_000;
/// Index entries (attempts or messages) one chunk reads at most while looking for picks: the
/// read is outside the writer, but a window with few picks must still come back to commit
/// its cursor now and then.
const CHUNK_SCAN_MAX: usize = 10_000;
/// Index entries a preview reads at most; past it the count is "at least".
pub const PREVIEW_SCAN_MAX: usize = 20_000;
/// Steps that failed in a row (storage errors) before a task is marked failed.
const STEP_FAILURES_MAX: u32 = 5;
const STEP_RETRY_PAUSE: Duration = Duration::from_secs(1);
/// Running tasks looked up when Herald starts, to carry on.
const RESUME_MAX: usize = 100_000;

/// Filters of the task list.
#[derive(Clone, Copy, Debug, Default)]
pub struct TaskFilter {
    pub status: Option<TaskStatus>,
    pub kind: Option<TaskKind>,
}

/// A bounded count: how many a preview found, and whether it looked at everything.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Estimate {
    pub count: usize,
    /// False when the scan stopped at `PREVIEW_SCAN_MAX`: there may be more.
    pub complete: bool,
}

/// A message a chunk will queue; for recover, with the failed delivery that made it a pick.
#[derive(Clone, Copy, Debug)]
struct Pick {
    /// Where in the window it was found (an attempt id or a message id): a chunk cut short
    /// before this pick resumes here.
    at: u128,
    msg: MessageId,
    failed: Option<DeliveryId>,
}

/// The ids of things made in `[since, until]` (until: now), for recover and replay; the window
/// may span at most `WINDOW_MAX_US` (Svix: 14 days).
fn window_ids(since: Micros, until: Option<Micros>) -> Result<(u128, u128)> {
    let until = until.unwrap_or_else(now_micros);
    if since > until {
        return Err(ServiceError::invalid(
            "since",
            "must not be after until (or now)",
        ));
    }
    if until.saturating_sub(since) > WINDOW_MAX_US {
        return Err(ServiceError::invalid(
            "since",
            "must be at most 14 days before until",
        ));
    }
    let ms = |us: Micros| (us.max(0) / 1000) as u64;
    Ok((
        id_floor_at_millis(ms(since)),
        id_floor_at_millis(ms(until) + 1).saturating_sub(1),
    ))
}

/// Walks `kind`'s selection for `ep` over ids `from..=hi`, handing each pick to `take` (which
/// answers whether to go on), reading at most `scan_max` entries. Answers where the walk
/// should resume, or `None` when it reached the end of the window.
///
/// Recover picks a message whose newest delivery to the endpoint failed for good, at that
/// delivery's last attempt (so each message once, however often it failed), payload still
/// kept. Replay picks a message the endpoint's subscription covers that never had a delivery
/// to it, payload still kept.
fn walk(
    r: &dyn Read,
    kind: TaskKind,
    ep: &Endpoint,
    (from, hi): (u128, u128),
    scan_max: usize,
    take: &mut dyn FnMut(Pick) -> bool,
) -> std::result::Result<Option<u128>, StoreError> {
    let mut stopped = false;
    let (visited, last) = match kind {
        TaskKind::Recover => {
            r.visit_endpoint_attempts(ep.id, (from, hi), false, scan_max, &mut |attempt, d| {
                if let Some(pick) = recoverable(r, ep, attempt, d)? {
                    stopped = !take(pick);
                }
                Ok(!stopped)
            })?
        }
        TaskKind::Replay => r.visit_message_heads(ep.app_id, (from, hi), scan_max, &mut |m| {
            if missing(r, ep, &m)? {
                stopped = !take(Pick {
                    at: m.id.0,
                    msg: m.id,
                    failed: None,
                });
            }
            Ok(!stopped)
        })?,
    };
    if !stopped && visited < scan_max {
        return Ok(None);
    }
    Ok(last
        .and_then(|l| l.checked_add(1))
        .filter(|next| *next <= hi))
}

fn recoverable(
    r: &dyn Read,
    ep: &Endpoint,
    attempt: AttemptId,
    delivery: DeliveryId,
) -> std::result::Result<Option<Pick>, StoreError> {
    let msg = delivery.msg;
    let newest_failed = r
        .newest_delivery_to(msg, ep.id)?
        .is_some_and(|d| d.id == delivery && d.state == DeliveryState::Failed);
    if !newest_failed || r.later_attempt_to(msg, ep.id, attempt)? {
        return Ok(None);
    }
    let kept = r
        .message_head(ep.app_id, msg)?
        .is_some_and(|m| m.has_payload);
    Ok(kept.then_some(Pick {
        at: attempt.0,
        msg,
        failed: Some(delivery),
    }))
}

fn missing(r: &dyn Read, ep: &Endpoint, m: &MessageHead) -> std::result::Result<bool, StoreError> {
    Ok(m.has_payload
        && routing::covers(ep, &m.event_type, m.channels.as_deref())
        && r.newest_delivery_to(m.id, ep.id)?.is_none())
}

/// Whether a pick read outside the writer still holds inside it.
fn still_holds(
    w: &dyn Read,
    kind: TaskKind,
    ep: EndpointId,
    pick: Pick,
) -> Result<bool, StoreError> {
    let newest = w.newest_delivery_to(pick.msg, ep)?;
    Ok(match kind {
        TaskKind::Recover => {
            newest.is_some_and(|d| Some(d.id) == pick.failed && d.state == DeliveryState::Failed)
        }
        TaskKind::Replay => newest.is_none(),
    })
}

impl Service {
    /// Starts recover (`TaskKind::Recover`) or replay-missing over `[since, until]` for one
    /// endpoint; answers once the task is durably recorded, before any work.
    pub async fn start_task(
        &self,
        caller: Caller,
        app: &str,
        endpoint: &str,
        kind: TaskKind,
        since: Micros,
        until: Option<Micros>,
    ) -> Result<BackgroundTask> {
        // Checked after the endpoint is found: another tenant's endpoint is not found first.
        let window = window_ids(since, until);
        let running_max = self.config.tasks_running_per_app_max;
        let kept_max = self.config.tasks_kept_per_app_max;
        let (app, endpoint) = (app.to_string(), endpoint.to_string());
        let task = self
            .write(move |w| {
                let ep =
                    find_app(w, caller, &app).and_then(|a| find_endpoint(w, a.id, &endpoint))?;
                let (lo, hi) = window.clone()?;
                if w.running_tasks_of(ep.app_id)? >= running_max {
                    return Err(ServiceError::cap_reached(
                        "",
                        "this application has as many background tasks running as it may",
                        running_max,
                        "tasks_running_per_app_max",
                    ));
                }
                let now = now_micros();
                let task = BackgroundTask {
                    id: TaskId(w.new_id()),
                    app_id: ep.app_id,
                    endpoint_id: ep.id,
                    kind,
                    status: TaskStatus::Running,
                    lo,
                    hi,
                    cursor: lo,
                    deliveries: 0,
                    failure: None,
                    created_at: now,
                    updated_at: now,
                };
                w.insert_task(&task, kept_max)?;
                Ok(task)
            })
            .await?;
        self.spawn_runner(task.id);
        Ok(task)
    }

    /// Carries on every task that was running when Herald stopped (called at start).
    pub async fn resume_tasks(&self) -> Result<usize> {
        let running = self.read(|r| Ok(r.running_tasks(RESUME_MAX)?)).await?;
        for id in &running {
            self.spawn_runner(*id);
        }
        if !running.is_empty() {
            tracing::info!(tasks = running.len(), "background tasks resumed");
        }
        Ok(running.len())
    }

    fn spawn_runner(&self, id: TaskId) {
        let service = self.clone();
        tokio::spawn(async move { service.run_task(id).await });
    }

    /// Steps through a task until it is finished or failed. Storage errors are retried a few
    /// times, then fail the task; a closed store (shutdown) leaves it running, to be resumed.
    async fn run_task(&self, id: TaskId) {
        let mut failures = 0;
        loop {
            match self.task_step(id).await {
                Ok(true) => {
                    failures = 0;
                    // Other tenants' work goes first; the next chunk waits its turn.
                    tokio::task::yield_now().await;
                }
                Ok(false) => return,
                Err(StoreError::Closed) => return,
                Err(e) => {
                    failures += 1;
                    tracing::warn!(task = %id, error = %e, "background task step failed");
                    if failures >= STEP_FAILURES_MAX {
                        let _ = self
                            .fail_task(id, "stopped after repeated storage errors")
                            .await;
                        return;
                    }
                    tokio::time::sleep(STEP_RETRY_PAUSE).await;
                }
            }
        }
    }

    /// One chunk: picks read from the cursor, then queued with the cursor moved, in one
    /// commit. Answers whether the task goes on.
    async fn task_step(&self, id: TaskId) -> std::result::Result<bool, StoreError> {
        let chunk_max = self.config.task_chunk_max;
        let read = self
            .store
            .read(move |r| {
                let Some(task) = r.task(id)?.filter(|t| t.status == TaskStatus::Running) else {
                    return Ok(None);
                };
                let Some(ep) = r.endpoint(task.endpoint_id)? else {
                    return Ok(Some((task, Vec::new(), None, false)));
                };
                let mut picks = Vec::new();
                let next = walk(
                    r,
                    task.kind,
                    &ep,
                    (task.cursor, task.hi),
                    CHUNK_SCAN_MAX,
                    &mut |p| {
                        picks.push(p);
                        picks.len() < chunk_max
                    },
                )?;
                Ok(Some((task, picks, next, true)))
            })
            .await?;
        let Some((task, picks, next, endpoint_exists)) = read else {
            return Ok(false);
        };
        let resends_max = self.config.resends_per_message_max;
        let budget = Duration::from_millis(self.config.task_chunk_budget_ms);
        let from = task.cursor;
        let (going, queued) = self
            .store
            .write(move |w| {
                // Only the state the chunk was read from moves on: a second runner, or a
                // restart meanwhile, finds the cursor moved and stops.
                let Some(mut task) = w
                    .task(id)?
                    .filter(|t| t.status == TaskStatus::Running && t.cursor == from)
                else {
                    return Ok((false, 0));
                };
                let endpoint = w.endpoint(task.endpoint_id)?.filter(|_| endpoint_exists);
                let Some(endpoint) = endpoint else {
                    task.status = TaskStatus::Failed;
                    task.failure = Some("the endpoint was deleted".into());
                    task.updated_at = now_micros();
                    w.put_task(&task)?;
                    return Ok((false, 0));
                };
                let mut queued = 0;
                let mut resume = next;
                let started = std::time::Instant::now();
                for (i, pick) in picks.iter().cloned().enumerate() {
                    // The writer's time is bounded too, whatever the file's size or the build:
                    // past the budget the rest waits for the next chunk (one pick at least is
                    // done, so a task always moves on).
                    if i > 0 && started.elapsed() >= budget {
                        resume = Some(pick.at);
                        break;
                    }
                    if !still_holds(w, task.kind, task.endpoint_id, pick)?
                        || w.manual_deliveries(pick.msg, resends_max)? >= resends_max
                    {
                        continue;
                    }
                    let key = (task.app_id, pick.msg);
                    if w.enqueue_manual(key, &endpoint, Priority::Normal)?
                        .is_some()
                    {
                        queued += 1;
                    }
                }
                task.deliveries += queued;
                match resume {
                    Some(next) => task.cursor = next,
                    None => {
                        task.cursor = task.hi;
                        task.status = TaskStatus::Finished;
                    }
                }
                task.updated_at = now_micros();
                w.put_task(&task)?;
                Ok((task.status == TaskStatus::Running, queued))
            })
            .await?;
        if queued > 0 {
            self.waker.wake();
        }
        Ok(going)
    }

    async fn fail_task(&self, id: TaskId, why: &'static str) -> Result<()> {
        self.write(move |w| {
            if let Some(mut task) = w.task(id)?.filter(|t| t.status == TaskStatus::Running) {
                task.status = TaskStatus::Failed;
                task.failure = Some(why.into());
                task.updated_at = now_micros();
                w.put_task(&task)?;
            }
            Ok(())
        })
        .await?;
        Ok(())
    }

    /// A task, as `caller` may see it: another application's is not found.
    pub async fn get_task(&self, caller: Caller, id: &str) -> Result<BackgroundTask> {
        let id = TaskId::parse(id).ok_or(ServiceError::NotFound("Background task"))?;
        self.read(move |r| {
            Ok(r.task(id)?
                .filter(|t| caller.may_access(t.app_id))
                .ok_or(ServiceError::NotFound("Background task")))
        })
        .await?
    }

    /// The tasks `caller` may see (an application's own, or every one for an admin).
    pub async fn list_tasks(
        &self,
        caller: Caller,
        params: ListParams,
        descending: bool,
        filter: TaskFilter,
    ) -> Result<ListPage<BackgroundTask>> {
        let query = self.page_query(&params, descending, |s| TaskId::parse(s).map(|i| i.0))?;
        let page = self
            .read(move |r| {
                let keep = |t: &BackgroundTask| {
                    filter.status.is_none_or(|s| s == t.status)
                        && filter.kind.is_none_or(|k| k == t.kind)
                };
                match caller {
                    Caller::App(app) => Ok(r.app_tasks(app, &query, &keep)?),
                    Caller::Admin => Ok(r.tasks(&query, &keep)?),
                }
            })
            .await?;
        Ok(list_page(page, |t| t.id.to_string()))
    }

    /// How many deliveries `recover` over `[since, until]` would queue now, looking at no more
    /// than `PREVIEW_SCAN_MAX` attempts.
    pub async fn recover_preview(
        &self,
        caller: Caller,
        app: &str,
        endpoint: &str,
        since: Micros,
        until: Option<Micros>,
    ) -> Result<Estimate> {
        self.preview(caller, app, endpoint, TaskKind::Recover, since, until)
            .await
    }

    /// How many messages `replay_missing` over `[since, until]` would queue now, looking at no
    /// more than `PREVIEW_SCAN_MAX` messages.
    pub async fn replay_preview(
        &self,
        caller: Caller,
        app: &str,
        endpoint: &str,
        since: Micros,
        until: Option<Micros>,
    ) -> Result<Estimate> {
        self.preview(caller, app, endpoint, TaskKind::Replay, since, until)
            .await
    }

    async fn preview(
        &self,
        caller: Caller,
        app: &str,
        endpoint: &str,
        kind: TaskKind,
        since: Micros,
        until: Option<Micros>,
    ) -> Result<Estimate> {
        let ep = self.get_endpoint(caller, app, endpoint).await?;
        let window = window_ids(since, until)?;
        let resends_max = self.config.resends_per_message_max;
        Ok(self
            .read(move |r| {
                let mut count = 0;
                let mut counted = |p: Pick| {
                    // As the writer would: a message with no manual delivery left is skipped.
                    if r.manual_deliveries(p.msg, resends_max)
                        .is_ok_and(|n| n < resends_max)
                    {
                        count += 1;
                    }
                    true
                };
                let rest = walk(r, kind, &ep, window, PREVIEW_SCAN_MAX, &mut counted)?;
                Ok(Estimate {
                    count,
                    complete: rest.is_none(),
                })
            })
            .await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_window_is_at_most_fourteen_days_and_not_backwards() {
        let now = now_micros();
        let day = 86_400 * 1_000_000;
        assert!(window_ids(now - 14 * day, Some(now)).is_ok());
        assert!(window_ids(now - 15 * day, Some(now)).is_err());
        assert!(window_ids(now, Some(now - day)).is_err());
        let (lo, hi) = window_ids(now - day, Some(now)).unwrap();
        let made_at_until = id_floor_at_millis((now / 1000) as u64) | 12_345;
        assert!(lo < made_at_until && made_at_until <= hi);
        assert!(hi < id_floor_at_millis((now / 1000) as u64 + 1));
    }
}
