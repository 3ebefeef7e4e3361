//! Mutations of background tasks (recover, replay-missing): their records and the
//! per-application index that says which are running.

use super::codec::encode;
use super::reads::TxRead;
use super::tables::{APP_TASKS, TASKS};
use super::{StoreError, Tx, Writer};
use crate::model::{AppId, BackgroundTask, TaskId, TaskStatus};

impl Writer<'_> {
    /// Records a new task. The application keeps at most `kept_max` tasks: the oldest
    /// finished or failed ones make room (a running one is never dropped).
    pub fn insert_task(
        &mut self,
        task: &BackgroundTask,
        kept_max: usize,
    ) -> Result<(), StoreError> {
        let held = self.app_task_index(task.app_id)?;
        let excess = (held.len() + 1).saturating_sub(kept_max);
        let doomed: Vec<u128> = held
            .into_iter()
            .filter(|(_, running)| !running)
            .map(|(id, _)| id)
            .take(excess)
            .collect();
        for id in doomed {
            self.remove_task(task.app_id, TaskId(id))?;
        }
        self.put_task(task)
    }

    /// Writes a task's new state.
    pub fn put_task(&mut self, task: &BackgroundTask) -> Result<(), StoreError> {
        self.table_mut(TASKS)?
            .insert(task.id.0, encode(task).as_slice())?;
        self.table_mut(APP_TASKS)?.insert(
            (task.app_id.0, task.id.0),
            task.status == TaskStatus::Running,
        )?;
        Ok(())
    }

    pub fn remove_task(&mut self, app: AppId, id: TaskId) -> Result<(), StoreError> {
        self.table_mut(TASKS)?.remove(id.0)?;
        self.table_mut(APP_TASKS)?.remove((app.0, id.0))?;
        Ok(())
    }

    /// Removes every task of an application (when it is deleted).
    pub fn remove_app_tasks(&mut self, app: AppId) -> Result<(), StoreError> {
        let ids: Vec<u128> = self
            .app_task_index(app)?
            .into_iter()
            .map(|(id, _)| id)
            .collect();
        for id in ids {
            self.remove_task(app, TaskId(id))?;
        }
        Ok(())
    }
}

impl Writer<'_> {
    /// An application's task ids, oldest first, each with whether it runs. Bounded: an
    /// application keeps at most `tasks_kept_per_app_max` tasks.
    fn app_task_index(&self, app: AppId) -> Result<Vec<(u128, bool)>, StoreError> {
        use redb::ReadableTable;
        let index = self.tx().table(APP_TASKS)?;
        let mut out = Vec::new();
        for e in index.range((app.0, 0)..=(app.0, u128::MAX))? {
            let (k, running) = e?;
            out.push((k.value().1, running.value()));
        }
        Ok(out)
    }
}
