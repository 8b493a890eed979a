//! Sticky execution: runs are kept between their workflow tasks, so a task needs to carry only
//! the events since the run's previous one, and the code is not replayed from the start each
//! time.
//!
//! A run's code is not `Send`, so each run lives on one executor thread, chosen by its
//! instance id; the async side hands tasks over and awaits the answers. Each thread keeps at
//! most its share of `sticky_runs` runs, dropping the least recently used. A task whose events
//! do not continue a kept run (another worker ran the instance, or this one restarted or
//! dropped it) is answered with [`Executed::NeedsHistory`], and the engine sends it again with
//! the whole history.

use std::collections::hash_map::DefaultHasher;
use std::collections::{HashMap, VecDeque};
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::sync::mpsc;

use baton_shared_schemas::messages::{ExecuteWorkflowTask, WorkflowTaskCompleted};
use baton_shared_schemas::{Failure, FailureKind, WorkflowId};
use baton_workflow::Registry;
use baton_workflow::replay::{ResumeError, Session};
use tokio::sync::oneshot;

/// How a workflow task went.
#[derive(Debug)]
pub(crate) enum Executed {
    /// It ran: what the code does next, or why it could not run.
    Ran(Result<WorkflowTaskCompleted, Failure>),
    /// Its events do not continue a run kept here: it needs the whole history.
    NeedsHistory,
}

struct Job {
    task: ExecuteWorkflowTask,
    answer: oneshot::Sender<Executed>,
}

/// The executor threads.
pub(crate) struct Executors {
    threads: Vec<mpsc::Sender<Job>>,
}

impl Executors {
    /// Starts `threads` executor threads keeping `runs` runs in all (0: none).
    pub(crate) fn start(registry: Arc<Registry>, threads: usize, runs: usize) -> Self {
        let threads = threads.max(1);
        let per_thread = runs.div_ceil(threads);
        let senders = (0..threads)
            .map(|index| {
                let (tx, rx) = mpsc::channel::<Job>();
                let registry = registry.clone();
                let spawned = std::thread::Builder::new()
                    .name(format!("baton-workflow-{index}"))
                    .spawn(move || executor_thread(&registry, per_thread, rx));
                if let Err(e) = spawned {
                    tracing::error!(error = %e, "cannot start a workflow executor thread; its tasks fail");
                }
                tx
            })
            .collect();
        Self { threads: senders }
    }

    /// Runs a workflow task on the thread that keeps its instance.
    pub(crate) async fn execute(&self, task: ExecuteWorkflowTask) -> Executed {
        let (answer, answered) = oneshot::channel();
        let thread = &self.threads[thread_of(task.workflow_id, self.threads.len())];
        if thread.send(Job { task, answer }).is_err() {
            return Executed::Ran(Err(executor_gone()));
        }
        answered.await.unwrap_or_else(|_| Executed::Ran(Err(executor_gone())))
    }
}

fn executor_gone() -> Failure {
    Failure::new(FailureKind::Panic, "the workflow executor thread stopped")
}

fn thread_of(id: WorkflowId, threads: usize) -> usize {
    let mut h = DefaultHasher::new();
    id.hash(&mut h);
    (h.finish() % threads as u64) as usize
}

/// The runs one thread keeps, least recently used dropped first.
struct Kept {
    capacity: usize,
    runs: HashMap<WorkflowId, (Session, u64)>,
    /// Uses in order; an entry whose stamp no longer matches the run's is stale.
    uses: VecDeque<(WorkflowId, u64)>,
    clock: u64,
}

impl Kept {
    fn take(&mut self, id: WorkflowId) -> Option<Session> {
        self.runs.remove(&id).map(|(session, _)| session)
    }

    fn keep(&mut self, id: WorkflowId, session: Session) {
        if self.capacity == 0 {
            return;
        }
        self.clock += 1;
        self.runs.insert(id, (session, self.clock));
        self.uses.push_back((id, self.clock));
        while self.runs.len() > self.capacity {
            let Some((oldest, stamp)) = self.uses.pop_front() else {
                break;
            };
            if self.runs.get(&oldest).is_some_and(|(_, s)| *s == stamp) {
                self.runs.remove(&oldest);
            }
        }
        // Stale entries pile up when the same runs are used again and again.
        if self.uses.len() > self.capacity.saturating_mul(4) + 64 {
            let runs = &self.runs;
            self.uses
                .retain(|(id, stamp)| runs.get(id).is_some_and(|(_, s)| s == stamp));
        }
    }
}

fn executor_thread(registry: &Registry, capacity: usize, jobs: mpsc::Receiver<Job>) {
    let mut kept = Kept {
        capacity,
        runs: HashMap::new(),
        uses: VecDeque::new(),
        clock: 0,
    };
    for Job { task, answer } in jobs {
        let executed = run_task(registry, &mut kept, &task);
        let _ = answer.send(executed);
    }
}

/// Runs one task: from the whole history it starts the run afresh; from events since an
/// earlier task it continues the kept run, if that is where they start.
fn run_task(registry: &Registry, kept: &mut Kept, task: &ExecuteWorkflowTask) -> Executed {
    let id = task.workflow_id;
    let previous = kept.take(id);
    if task.history_offset == 0 {
        drop(previous);
        return match Session::start(registry, task) {
            Ok((session, done)) => {
                if !session.is_finished() {
                    kept.keep(id, session);
                }
                Executed::Ran(Ok(done))
            }
            Err(failure) => Executed::Ran(Err(failure)),
        };
    }
    let Some(mut session) = previous else {
        return Executed::NeedsHistory;
    };
    match session.resume(task) {
        Ok(done) => {
            if !session.is_finished() {
                kept.keep(id, session);
            }
            Executed::Ran(Ok(done))
        }
        Err(ResumeError::NeedsHistory) => Executed::NeedsHistory,
        // A failed task drops the run: its retry brings the whole history.
        Err(ResumeError::Failed(failure)) => Executed::Ran(Err(failure)),
    }
}
