//! `/api/v1/background-task`: recover and replay-missing as Svix background tasks, read back
//! by id or listed. The JSON shapes of a task (`BackgroundTaskOut`, and `RecoverOut` /
//! `ReplayOut` as the starting calls answer) live here.

use axum::Json;
use axum::extract::{Path, State};
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::error::{ApiError, HttpErrorOut, HttpValidationError};
use super::extract::{Auth, QueryArgs};
use super::openapi::{Ordering, Pagination};
use super::{ListResponse, descending, list_params, time};
use crate::model::{BackgroundTask, TaskKind, TaskStatus};
use crate::service::{Service, TaskFilter};

pub fn routes() -> OpenApiRouter<Service> {
    OpenApiRouter::new()
        .routes(routes!(list))
        .routes(routes!(get))
}

/// What recover and replay-missing answer: the task, recorded and running.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = RecoverOut)]
pub struct TaskOut {
    /// `qtask_...`
    id: String,
    #[schema(value_type = BackgroundTaskStatus)]
    status: &'static str,
    #[schema(value_type = BackgroundTaskType)]
    task: &'static str,
    #[schema(format = DateTime)]
    updated_at: String,
}

impl From<&BackgroundTask> for TaskOut {
    fn from(t: &BackgroundTask) -> Self {
        TaskOut {
            id: t.id.to_string(),
            status: status_name(t.status),
            task: kind_name(t.kind),
            updated_at: time(t.updated_at),
        }
    }
}

/// A background task as read back.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct BackgroundTaskOut {
    /// `qtask_...`
    id: String,
    #[schema(value_type = BackgroundTaskStatus)]
    status: &'static str,
    #[schema(value_type = BackgroundTaskType)]
    task: &'static str,
    #[schema(format = DateTime)]
    updated_at: String,
    data: TaskData,
}

/// What the task has done so far.
#[derive(Serialize, ToSchema)]
pub struct TaskData {
    /// Deliveries queued so far (all of them once `finished`).
    deliveries: u64,
    /// Why it failed (`failed` only).
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

impl From<BackgroundTask> for BackgroundTaskOut {
    fn from(t: BackgroundTask) -> Self {
        let head = TaskOut::from(&t);
        BackgroundTaskOut {
            id: head.id,
            status: head.status,
            task: head.task,
            updated_at: head.updated_at,
            data: TaskData {
                deliveries: t.deliveries,
                error: t.failure,
            },
        }
    }
}

/// The state of a task.
#[derive(ToSchema)]
#[schema(rename_all = "lowercase")]
#[allow(dead_code)]
enum BackgroundTaskStatus {
    Running,
    Finished,
    Failed,
}

#[derive(ToSchema)]
#[allow(dead_code)]
enum BackgroundTaskType {
    #[schema(rename = "endpoint.recover")]
    Recover,
    #[schema(rename = "endpoint.replay")]
    Replay,
}

fn status_name(s: TaskStatus) -> &'static str {
    match s {
        TaskStatus::Running => "running",
        TaskStatus::Finished => "finished",
        TaskStatus::Failed => "failed",
    }
}

fn kind_name(k: TaskKind) -> &'static str {
    match k {
        TaskKind::Recover => "endpoint.recover",
        TaskKind::Replay => "endpoint.replay",
    }
}

/// List background tasks
///
/// A token scoped to an application sees that application's tasks only. An application keeps
/// its newest `tasks_kept_per_app_max` tasks.
#[utoipa::path(
    get,
    path = "/background-task",
    tag = "Background Tasks",
    operation_id = "v1.background-task.list",
    params(
        Pagination,
        ("order" = Option<Ordering>, Query, description = "Order by id; default `descending`."),
        ("status" = Option<BackgroundTaskStatus>, Query, description = "Only tasks in this state."),
        ("task" = Option<BackgroundTaskType>, Query, description = "Only tasks of this kind."),
    ),
    responses(
        (status = 200, description = "A page of tasks", body = ListResponse<BackgroundTaskOut>),
        (status = 400, description = "A query parameter does not parse", body = HttpErrorOut),
        (status = 422, description = "`limit`, `order`, `status` or `task` out of range", body = HttpValidationError),
    )
)]
async fn list(
    State(s): State<Service>,
    Auth(caller): Auth,
    q: QueryArgs,
) -> Result<Json<ListResponse<BackgroundTaskOut>>, ApiError> {
    let bad = |field: &str, v: &str| {
        ApiError::invalid(
            &["query", field],
            format!("'{v}' is not one of its values"),
            "value_error",
        )
    };
    let status = match q.str("status") {
        None => None,
        Some("running") => Some(TaskStatus::Running),
        Some("finished") => Some(TaskStatus::Finished),
        Some("failed") => Some(TaskStatus::Failed),
        Some(other) => return Err(bad("status", other)),
    };
    let kind = match q.str("task") {
        None => None,
        Some("endpoint.recover") => Some(TaskKind::Recover),
        Some("endpoint.replay") => Some(TaskKind::Replay),
        Some(other) => return Err(bad("task", other)),
    };
    let page = s
        .list_tasks(
            caller,
            list_params(&q)?,
            descending(&q, true)?,
            TaskFilter { status, kind },
        )
        .await?;
    Ok(Json(ListResponse::from_page(page, BackgroundTaskOut::from)))
}

/// Get a background task
///
/// `running` until its last chunk is committed, then `finished` (or `failed`, with `data.error`);
/// `data.deliveries` counts what it has queued.
#[utoipa::path(
    get,
    path = "/background-task/{task_id}",
    tag = "Background Tasks",
    operation_id = "v1.background-task.get",
    params(("task_id" = String, Path, description = "The task's id (`qtask_...`).")),
    responses(
        (status = 200, description = "The task", body = BackgroundTaskOut),
        (status = 404, description = "No such task for this token", body = HttpErrorOut),
    )
)]
async fn get(
    State(s): State<Service>,
    Auth(caller): Auth,
    Path(task_id): Path<String>,
) -> Result<Json<BackgroundTaskOut>, ApiError> {
    Ok(Json(s.get_task(caller, &task_id).await?.into()))
}
