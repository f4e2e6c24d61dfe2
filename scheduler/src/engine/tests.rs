//! The engine's loops, one step at a time, against in-memory fakes: the tests call a
//! scheduling tick, a reap, a kill check or a drift check themselves, move the clock by hand,
//! and end each attempt when they choose, so every interleaving they check is deterministic.

mod fakes;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use tokio::task::JoinHandle;

use self::fakes::*;
use super::*;
use crate::runner::TaskResult;
use crate::slurm::SlurmState;
use crate::state::{JobAction, JobState, TaskState};
use crate::workflow::{ExecutorKind, Priority, Workflow};

/// A test's engine and what it is made of.
struct Harness<X> {
    clock: Arc<ManualClock>,
    store: FakeStore,
    /// The attempts of local tasks (of every task, unless the engine has a Slurm executor).
    executor: FakeExecutor,
    deployer: FakeDeployer,
    engine: Arc<Engine<FakeStore, X, FakeDeployer>>,
    folders: Folders,
}

fn settings(gpus: u32) -> SchedulerSettings {
    SchedulerSettings {
        gpus,
        lease_secs: 2,
        ..SchedulerSettings::default()
    }
}

impl Harness<FakeExecutor> {
    fn new(slots: u32, gpus: u32) -> Self {
        let executor = FakeExecutor::default();
        Harness::with_executor(slots, gpus, executor.clone(), executor)
    }

    /// A second worker on the same store and clock (another replica).
    fn replica(&self, owner: &str) -> Harness<FakeExecutor> {
        let executor = FakeExecutor::default();
        let engine = Arc::new(Engine::new(
            settings(0),
            self.folders.host(4),
            owner.to_owned(),
            EngineParts {
                store: self.store.clone(),
                executor: executor.clone(),
                deployer: self.deployer.clone(),
                clock: self.clock.clone(),
                metrics: Arc::new(NoMetrics),
            },
        ));
        Harness {
            clock: self.clock.clone(),
            store: self.store.clone(),
            executor,
            deployer: self.deployer.clone(),
            engine,
            folders: Folders::new(),
        }
    }
}

impl<X: TaskExecutor> Harness<X> {
    /// An engine running its attempts on `engine_executor`, whose local attempts `executor`
    /// sees.
    fn with_executor(slots: u32, gpus: u32, engine_executor: X, executor: FakeExecutor) -> Self {
        let clock = ManualClock::at(1_000);
        let store = FakeStore::new(clock.clone());
        let deployer = FakeDeployer::default();
        let folders = Folders::new();
        let engine = Arc::new(Engine::new(
            settings(gpus),
            folders.host(slots),
            "host-a-1".to_owned(),
            EngineParts {
                store: store.clone(),
                executor: engine_executor,
                deployer: deployer.clone(),
                clock: clock.clone(),
                metrics: Arc::new(NoMetrics),
            },
        ));
        Harness {
            clock,
            store,
            executor,
            deployer,
            engine,
            folders,
        }
    }

    fn submit(&self, workflow: &str, priority: Option<Priority>) -> String {
        self.submit_workflow(Workflow::parse(workflow).unwrap(), priority)
    }

    fn submit_workflow(&self, workflow: Workflow, priority: Option<Priority>) -> String {
        self.store
            .submit(
                Submission {
                    workflow,
                    workflow_version: None,
                    variables: BTreeMap::new(),
                    priority,
                    owner: "tester".into(),
                    origin: "api".into(),
                    model: None,
                },
                ExecutorKind::Local,
            )
            .id
    }

    /// One scheduling tick; the handles of the attempts it started.
    async fn tick(&self) -> Vec<JoinHandle<()>> {
        match self.engine.schedule_once().await {
            Ok(started) => started,
            Err(e) => panic!("scheduling failed: {e}"),
        }
    }

    fn attempt_dir(&self, job: &str, task: &str, attempt: u32) -> std::path::PathBuf {
        self.engine.attempt_dir(job, task, attempt)
    }
}

/// Wait (in small steps, never for ever) until `done` holds: attempts reach their executor
/// after their folder is written on a blocking thread.
async fn until(what: &str, mut done: impl FnMut() -> bool) {
    for _ in 0..5_000 {
        if done() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    panic!("timed out waiting for {what}");
}

async fn ended(handles: Vec<JoinHandle<()>>) {
    for handle in handles {
        handle.await.unwrap();
    }
}

fn one_task(name: &str, extra: &str) -> String {
    format!("name: {name}\ntasks:\n  - name: t\n    kind: script\n    script: 'true'\n{extra}")
}

fn ok(variables: &[(&str, &str)]) -> Outcome {
    Outcome::finished(TaskResult {
        ok: true,
        variables: variables
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
        ..TaskResult::default()
    })
}

// ---------------------------------------------------------------------------------------------
// Priorities and slots

#[tokio::test]
async fn higher_priority_then_older_jobs_start_first() {
    let h = Harness::new(1, 0);
    let a = h.submit(&one_task("a", ""), None);
    h.clock.set(2_000);
    let b = h.submit(&one_task("b", ""), Some(Priority::Low));
    h.clock.set(3_000);
    let c = h.submit(&one_task("c", ""), Some(Priority::High));
    h.clock.set(4_000);
    let d = h.submit(&one_task("d", ""), None);

    let mut order = Vec::new();
    for _ in 0..4 {
        let started = h.tick().await;
        assert_eq!(started.len(), 1, "one CPU slot: one task at a time");
        until("the attempt to start", || h.executor.running().len() == 1).await;
        let running = h.executor.running().remove(0);
        assert!(h.tick().await.is_empty(), "the slot is taken");
        order.push(running.job.clone());
        h.executor.end(&running, ok(&[]));
        ended(started).await;
    }
    assert_eq!(order, vec![c.clone(), a.clone(), d.clone(), b.clone()]);
    assert_eq!(
        h.executor.started(),
        [c, a, d, b].map(|job| key(&job, "t", 1)).to_vec()
    );
    for job in h.store.all_jobs() {
        assert_eq!(job.state, JobState::Finished, "{}", job.name);
    }
}

#[tokio::test]
async fn tasks_start_only_within_the_cpu_and_gpu_slots() {
    let h = Harness::new(3, 1);
    let big = h.submit(&one_task("big", "    resources: {cpus: 2}\n"), None);
    let gpu = h.submit(&one_task("gpu", "    resources: {gpus: 1}\n"), None);
    let two_gpus = h.submit(&one_task("two-gpus", "    resources: {gpus: 2}\n"), None);
    let small = h.submit(&one_task("small", ""), None);
    let huge = h.submit(&one_task("huge", "    resources: {cpus: 64}\n"), None);
    let slurm = h.submit(
        &one_task(
            "on-slurm",
            "    executor: slurm\n    resources: {cpus: 8}\n",
        ),
        None,
    );

    let first = h.tick().await;
    until("three attempts", || h.executor.running().len() == 3).await;
    let jobs = |keys: Vec<AttemptKey>| keys.into_iter().map(|k| k.job).collect::<Vec<_>>();
    let mut expected = vec![big.clone(), gpu.clone(), slurm.clone()];
    expected.sort();
    // big (2 CPUs) and gpu (1 CPU, 1 GPU) fill the pool; Slurm tasks do not count against it;
    // two-gpus waits for an executor with two GPUs; small and huge wait for CPUs.
    assert_eq!(jobs(h.executor.running()), expected);
    assert_eq!(first.len(), 3);

    h.executor.end(&key(&big, "t", 1), ok(&[]));
    until("big to give its CPUs back", || h.engine.running() == 2).await;
    let mut started = h.tick().await;
    until("small to start", || h.executor.running().len() == 3).await;
    assert!(h.executor.running().contains(&key(&small, "t", 1)));

    for running in h.executor.running() {
        h.executor.end(&running, ok(&[]));
    }
    ended(first).await;
    ended(std::mem::take(&mut started)).await;
    // A task asking for more CPUs than the pool has runs alone, on all of them.
    let alone = h.tick().await;
    until("huge to start", || h.executor.running().len() == 1).await;
    assert_eq!(h.executor.running(), vec![key(&huge, "t", 1)]);
    h.executor.end(&key(&huge, "t", 1), ok(&[]));
    ended(alone).await;
    assert!(h.tick().await.is_empty());
    assert_eq!(h.store.task_now(&two_gpus, "t").state, TaskState::Pending);
}

// ---------------------------------------------------------------------------------------------
// Retries

#[tokio::test]
async fn failed_attempts_are_retried_after_their_backoff() {
    let h = Harness::new(2, 0);
    let job = h.submit(
        &one_task(
            "flaky",
            "    retries: {max_attempts: 3, backoff_secs: 2, backoff_factor: 3}\n",
        ),
        None,
    );
    h.clock.set(10_000);
    let started = h.tick().await;
    until("attempt 1", || h.executor.running().len() == 1).await;
    h.executor
        .end(&key(&job, "t", 1), Outcome::failed("boom 1"));
    ended(started).await;

    let task = h.store.task_now(&job, "t");
    assert_eq!(
        (task.state, task.attempt, task.not_before),
        (TaskState::Pending, 1, 12_000),
        "back to pending, 2 s later"
    );
    assert_eq!(h.store.job_now(&job).state, JobState::Running);
    let history = h.store.history(&job, "t");
    assert_eq!(history.len(), 1);
    assert_eq!(history[0]["state"], "failed");
    assert_eq!(history[0]["error"], "boom 1");

    h.clock.set(11_999);
    assert!(h.tick().await.is_empty(), "not before its back-off");
    h.clock.set(12_000);
    let started = h.tick().await;
    until("attempt 2", || {
        h.executor.running() == vec![key(&job, "t", 2)]
    })
    .await;
    h.executor
        .end(&key(&job, "t", 2), Outcome::failed("boom 2"));
    ended(started).await;
    // The second wait is the first times the factor.
    assert_eq!(h.store.task_now(&job, "t").not_before, 12_000 + 6_000);

    h.clock.set(18_000);
    let started = h.tick().await;
    until("attempt 3", || {
        h.executor.running() == vec![key(&job, "t", 3)]
    })
    .await;
    h.executor
        .end(&key(&job, "t", 3), Outcome::failed("boom 3"));
    ended(started).await;
    let task = h.store.task_now(&job, "t");
    assert_eq!((task.state, task.attempt), (TaskState::Failed, 3));
    assert_eq!(task.error.as_deref(), Some("boom 3"));
    let job = h.store.job_now(&job);
    assert_eq!(job.state, JobState::Failed);
    assert_eq!(job.reason.as_deref(), Some("task t failed"));
    assert_eq!(h.store.history(&job.id, "t").len(), 3);
    assert!(h.tick().await.is_empty());
}

#[tokio::test]
async fn a_task_sees_what_the_tasks_before_it_exported() {
    let h = Harness::new(2, 0);
    let workflow = "name: chain\nvariables: {GREETING: hello}\ntasks:\n  \
        - {name: first, kind: script, script: 'true'}\n  \
        - name: second\n    kind: script\n    script: 'true'\n    depends_on: [first]\n    \
          variables: {MESSAGE: '${GREETING} ${NAME}'}\n";
    let job = h.submit(workflow, None);
    let started = h.tick().await;
    until("first", || h.executor.running().len() == 1).await;
    assert_eq!(h.tick().await.len(), 0, "second waits for first");
    h.executor
        .end(&key(&job, "first", 1), ok(&[("NAME", "world")]));
    ended(started).await;
    let started = h.tick().await;
    until("second", || h.executor.running().len() == 1).await;
    let text = std::fs::read_to_string(
        h.attempt_dir(&job, "second", 1)
            .join(crate::runner::TASK_FILE),
    )
    .unwrap();
    let file: crate::runner::TaskFile = serde_json::from_str(&text).unwrap();
    assert_eq!(file.variables["NAME"], "world");
    assert_eq!(file.variables["MESSAGE"], "hello world");
    assert!(
        !file.variables.contains_key("first.NAME"),
        "namespaced names stay out of the environment"
    );
    h.executor.end(&key(&job, "second", 1), ok(&[]));
    ended(started).await;
    assert_eq!(h.store.job_now(&job).state, JobState::Finished);
}

// ---------------------------------------------------------------------------------------------
// Leases

#[tokio::test]
async fn another_workers_expired_lease_is_retried_or_failed_with_the_reason() {
    let h = Harness::new(2, 0);
    let retried = h.submit(
        &one_task("retried", "    retries: {max_attempts: 2}\n"),
        None,
    );
    let failed = h.submit(&one_task("failed", ""), None);
    let alive = h.submit(&one_task("alive", ""), None);
    for (job, lease_until) in [(&retried, 5_000), (&failed, 5_000), (&alive, 60_000)] {
        let task = h.store.task_now(job, "t");
        h.store.claim_as(&task, "gone-host-7", lease_until, "4242");
    }
    h.clock.set(6_000);
    h.engine.reap(6_000).await.unwrap();

    let reason = "attempt 1 was lost: its worker (gone-host-7) stopped renewing its lease \
                  (maas stopped or lost the task)";
    let task = h.store.task_now(&retried, "t");
    assert_eq!(
        (task.state, task.not_before, task.lease_owner.clone()),
        (TaskState::Pending, 6_000, None),
        "tried again at once"
    );
    assert_eq!(h.store.history(&retried, "t")[0]["error"], reason);
    let task = h.store.task_now(&failed, "t");
    assert_eq!(task.state, TaskState::Failed);
    assert_eq!(task.error.as_deref(), Some(reason));
    assert_eq!(h.store.job_now(&failed).state, JobState::Failed);
    assert_eq!(
        h.store.task_now(&alive, "t").state,
        TaskState::Running,
        "a lease still valid is left alone"
    );
    // What the lost attempts may have left running was ended before anything else.
    assert_eq!(
        h.executor.orphans(),
        vec![key(&retried, "t", 1), key(&failed, "t", 1)]
    );

    let started = h.tick().await;
    until("the retry", || {
        h.executor.running() == vec![key(&retried, "t", 2)]
    })
    .await;
    h.executor.end(&key(&retried, "t", 2), ok(&[]));
    ended(started).await;
    assert_eq!(h.store.job_now(&retried).state, JobState::Finished);
}

#[tokio::test]
async fn a_late_worker_cannot_end_a_reaped_attempt() {
    let a = Harness::new(2, 0);
    let b = a.replica("host-b-1");
    let job = a.submit(&one_task("slow", "    retries: {max_attempts: 2}\n"), None);

    let on_a = a.tick().await;
    until("attempt 1 on a", || a.executor.running().len() == 1).await;
    let lease = a.store.task_now(&job, "t").lease_until.unwrap();
    assert_eq!(lease, 1_000 + 2_000, "lease_secs from now");

    // a renews while it lives ...
    a.clock.advance(1_500);
    a.engine.renew_leases(a.clock.now_ms()).await.unwrap();
    a.clock.advance(1_500);
    b.engine.reap(b.clock.now_ms()).await.unwrap();
    assert_eq!(a.store.task_now(&job, "t").state, TaskState::Running);

    // ... then stops renewing: b reaps its attempt and runs the retry.
    a.clock.advance(5_000);
    b.engine.reap(b.clock.now_ms()).await.unwrap();
    let on_b = b.tick().await;
    until("attempt 2 on b", || b.executor.running().len() == 1).await;
    let task = b.store.task_now(&job, "t");
    assert_eq!(
        (task.attempt, task.lease_owner.as_deref()),
        (2, Some("host-b-1"))
    );

    // a's attempt 1 ends late, finished: nothing changes.
    a.executor.end(&key(&job, "t", 1), ok(&[("LATE", "yes")]));
    ended(on_a).await;
    let task = a.store.task_now(&job, "t");
    assert_eq!((task.state, task.attempt), (TaskState::Running, 2));
    assert_eq!(task.variables, "{}");
    assert_eq!(
        a.store.history(&job, "t").len(),
        1,
        "only the reaped attempt"
    );

    b.executor
        .end(&key(&job, "t", 2), ok(&[("ON_TIME", "yes")]));
    ended(on_b).await;
    let task = a.store.task_now(&job, "t");
    assert_eq!(task.state, TaskState::Finished);
    assert!(task.variables.contains("ON_TIME"));
    let history = a.store.history(&job, "t");
    assert_eq!(
        history
            .iter()
            .map(|h| h["attempt"].clone())
            .collect::<Vec<_>>(),
        vec![json!(1), json!(2)]
    );
    assert_eq!(a.store.job_now(&job).state, JobState::Finished);
}

// ---------------------------------------------------------------------------------------------
// Cancel, kill, pause

const TWO_AND_ONE: &str = "name: fan\ntasks:\n  \
    - {name: a, kind: script, script: 'true'}\n  \
    - {name: b, kind: script, script: 'true'}\n  \
    - {name: c, kind: script, script: 'true', depends_on: [a]}\n";

#[tokio::test]
async fn cancel_lets_running_tasks_finish() {
    let h = Harness::new(4, 0);
    let job = h.submit(TWO_AND_ONE, None);
    let started = h.tick().await;
    until("a and b", || h.executor.running().len() == 2).await;

    assert_eq!(h.store.act(&job, JobAction::Cancel), JobState::Canceled);
    h.engine.end_killed().await;
    assert_eq!(h.executor.running().len(), 2, "a cancel kills nothing");

    h.executor.end(&key(&job, "a", 1), ok(&[]));
    h.executor.end(&key(&job, "b", 1), ok(&[]));
    ended(started).await;
    assert!(h.tick().await.is_empty(), "c never starts");
    for (task, state) in [
        ("a", TaskState::Finished),
        ("b", TaskState::Finished),
        ("c", TaskState::Skipped),
    ] {
        assert_eq!(h.store.task_now(&job, task).state, state, "{task}");
    }
    assert_eq!(h.store.job_now(&job).state, JobState::Canceled);
}

#[tokio::test]
async fn kill_ends_running_tasks() {
    let h = Harness::new(4, 0);
    // Killed through another replica: the heartbeat's check ends the attempts here.
    let elsewhere = h.submit(TWO_AND_ONE, None);
    let started = h.tick().await;
    until("a and b", || h.executor.running().len() == 2).await;
    assert_eq!(h.store.act(&elsewhere, JobAction::Kill), JobState::Killed);
    assert_eq!(h.executor.running().len(), 2, "until the check");
    h.engine.end_killed().await;
    ended(started).await;
    assert!(h.executor.running().is_empty());
    for (task, state) in [
        ("a", TaskState::Killed),
        ("b", TaskState::Killed),
        ("c", TaskState::Skipped),
    ] {
        assert_eq!(h.store.task_now(&elsewhere, task).state, state, "{task}");
    }
    assert_eq!(
        h.store.task_now(&elsewhere, "a").error.as_deref(),
        Some("killed by an operator")
    );
    assert_eq!(h.store.job_now(&elsewhere).state, JobState::Killed);
    assert_eq!(h.engine.running(), 0);

    // Killed through this process's API: at once, only that job's attempts.
    let here = h.submit(&one_task("here", ""), None);
    let other = h.submit(&one_task("other", ""), None);
    let started = h.tick().await;
    until("both", || h.executor.running().len() == 2).await;
    h.store.act(&here, JobAction::Kill);
    h.engine.kill(&here);
    until("the kill", || {
        h.executor.running() == vec![key(&other, "t", 1)]
    })
    .await;
    h.executor.end(&key(&other, "t", 1), ok(&[]));
    ended(started).await;
    assert_eq!(h.store.task_now(&here, "t").state, TaskState::Killed);
    assert_eq!(h.store.job_now(&other).state, JobState::Finished);
}

#[tokio::test]
async fn a_paused_job_starts_nothing_until_resumed() {
    let h = Harness::new(4, 0);
    let job = h.submit(
        TWO_AND_ONE
            .replace("depends_on: [a]", "depends_on: [a, b]")
            .as_str(),
        None,
    );
    h.store.act(&job, JobAction::Pause);
    assert!(h.tick().await.is_empty());
    h.store.act(&job, JobAction::Resume);
    let started = h.tick().await;
    assert_eq!(started.len(), 2);
    until("a and b", || h.executor.running().len() == 2).await;
    h.store.act(&job, JobAction::Pause);
    h.executor.end(&key(&job, "a", 1), ok(&[]));
    h.executor.end(&key(&job, "b", 1), ok(&[]));
    ended(started).await;
    assert!(h.tick().await.is_empty(), "c waits while the job is paused");
    assert_eq!(h.store.task_now(&job, "c").state, TaskState::Pending);
}

type SlurmHarness = Harness<Executors<FakeExecutor, SlurmExecutor<FakeSlurm>>>;

fn slurm_harness() -> (SlurmHarness, FakeSlurm) {
    let slurm = FakeSlurm::default();
    let local = FakeExecutor::default();
    let executor = Executors {
        local: local.clone(),
        slurm: SlurmExecutor::new(
            slurm.clone(),
            TaskCommand {
                program: "/opt/maas/bin/maas".into(),
                env: BTreeMap::from([("PATH".to_owned(), "/usr/bin".to_owned())]),
            },
            vec!["--partition=debug".into()],
        ),
    };
    (Harness::with_executor(2, 0, executor, local), slurm)
}

/// Let the Slurm executor poll (time is paused: sleeping moves it).
async fn polls(n: u64) {
    tokio::time::sleep(Duration::from_millis(1_000 * n + 100)).await;
}

#[tokio::test(start_paused = true)]
async fn pause_holds_pending_slurm_jobs_and_resume_releases_them() {
    let (h, slurm) = slurm_harness();
    let job = h.submit(
        &one_task(
            "on-slurm",
            "    executor: slurm\n    sbatch_args: ['--qos=low']\n    resources: {cpus: 2, memory_mb: 512}\n",
        ),
        None,
    );
    let started = h.tick().await;
    until("the sbatch", || !slurm.submitted().is_empty()).await;
    let dir = h.attempt_dir(&job, "t", 1);
    let batch = &slurm.submitted()[0];
    assert_eq!(
        batch.script,
        format!("exec '/opt/maas/bin/maas' task exec '{}'", dir.display())
    );
    assert_eq!(batch.extra_args, vec!["--partition=debug", "--qos=low"]);
    assert_eq!((batch.cpus, batch.memory_mb), (Some(2), Some(512)));
    assert_eq!(batch.env, vec![("PATH".to_owned(), "/usr/bin".to_owned())]);
    until("the native id", || {
        h.store.task_now(&job, "t").native_id.as_deref() == Some("100")
    })
    .await;

    polls(2).await;
    assert!(
        slurm.calls().is_empty(),
        "a running job's pending Slurm job is left alone"
    );

    h.store.act(&job, JobAction::Pause);
    polls(1).await;
    assert_eq!(slurm.calls(), vec!["hold 100"]);
    assert_eq!(slurm.state_of("100"), Some(SlurmState::Held));
    polls(3).await;
    assert_eq!(slurm.calls(), vec!["hold 100"], "held once");

    h.store.act(&job, JobAction::Resume);
    polls(1).await;
    assert_eq!(slurm.calls(), vec!["hold 100", "release 100"]);

    // Started on a node: a pause no longer holds it.
    slurm.set_state("100", SlurmState::Running);
    h.store.act(&job, JobAction::Pause);
    polls(2).await;
    assert_eq!(slurm.calls(), vec!["hold 100", "release 100"]);
    h.store.act(&job, JobAction::Resume);

    std::fs::write(
        dir.join(crate::runner::RESULT_FILE),
        r#"{"ok": true, "variables": {"ON": "slurm"}}"#,
    )
    .unwrap();
    slurm.set_state("100", SlurmState::Completed { exit_code: 0 });
    ended(started).await;
    let task = h.store.task_now(&job, "t");
    assert_eq!(task.state, TaskState::Finished);
    assert_eq!(task.variables, r#"{"ON":"slurm"}"#);
    assert_eq!(h.store.job_now(&job).state, JobState::Finished);
}

#[tokio::test(start_paused = true)]
async fn a_killed_or_lost_slurm_attempt_is_cancelled_in_slurm() {
    let (h, slurm) = slurm_harness();
    let job = h.submit(&one_task("on-slurm", "    executor: slurm\n"), None);
    let started = h.tick().await;
    until("the sbatch", || !slurm.submitted().is_empty()).await;
    h.store.act(&job, JobAction::Kill);
    h.engine.kill(&job);
    ended(started).await;
    assert_eq!(slurm.calls(), vec!["cancel 100"]);
    assert_eq!(h.store.task_now(&job, "t").state, TaskState::Killed);

    // Another worker's Slurm attempt, lost with its worker.
    let lost = h.submit(&one_task("lost", "    executor: slurm\n"), None);
    let task = h.store.task_now(&lost, "t");
    h.store.claim_as(&task, "gone-host-1", 1_500, "777");
    h.engine.reap(2_000).await.unwrap();
    assert_eq!(slurm.calls(), vec!["cancel 100", "cancel 777"]);
}

// ---------------------------------------------------------------------------------------------
// Retraining on drift

fn retraining_workflow() -> Workflow {
    Workflow::parse(&one_task("retrain-m", "")).unwrap()
}

#[tokio::test]
async fn one_drift_started_retraining_at_a_time_per_model() {
    let h = Harness::new(2, 0);
    h.store.set_retraining("m", retraining_workflow(), Some(3));
    h.store.add_drift("m", 1_500);
    h.store.add_drift("no-workflow", 1_500);
    h.clock.set(2_000);
    h.engine.watch_drift().await.unwrap();
    let jobs = h.store.all_jobs();
    assert_eq!(
        jobs.len(),
        1,
        "one job, for the model that names a workflow"
    );
    let first = &jobs[0];
    assert_eq!(
        (
            first.origin.as_str(),
            first.model.as_deref(),
            first.owner.as_str()
        ),
        ("drift", Some("m"), "maas")
    );
    let variables: BTreeMap<String, String> = serde_json::from_str(&first.variables).unwrap();
    assert_eq!(variables["MODEL_NAME"], "m");
    assert_eq!(variables["MODEL_VERSION"], "3");

    // More drift while it runs: still one.
    h.clock.set(3_000);
    h.store.add_drift("m", 2_500);
    h.engine.watch_drift().await.unwrap();
    assert_eq!(h.store.all_jobs().len(), 1);

    // Once it is over, drift seen while it was pending or running starts nothing: the
    // retraining answered it.
    h.store.act(&first.id, JobAction::Cancel);
    let ended = 3_000;
    h.clock.set(4_000);
    h.engine.watch_drift().await.unwrap();
    assert_eq!(h.store.all_jobs().len(), 1);
    // Nor does drift within the cool-down after its end (600 s by default) ...
    let cooldown = 600_000;
    h.store.add_drift("m", ended + cooldown - 1);
    h.clock.set(ended + cooldown + 500);
    h.engine.watch_drift().await.unwrap();
    assert_eq!(h.store.all_jobs().len(), 1, "drift in the cool-down");
    // ... while drift after it starts the next one ...
    h.store.add_drift("m", ended + cooldown);
    h.clock.set(ended + cooldown + 1_000);
    h.engine.watch_drift().await.unwrap();
    assert_eq!(h.store.all_jobs().len(), 2);
    // ... and drift it already answered does not.
    let second = h.store.all_jobs()[1].clone();
    assert_eq!(second.origin, "drift");
    h.store.act(&second.id, JobAction::Kill);
    let ended = h.clock.now_ms();
    h.clock.set(ended + 2 * cooldown);
    h.engine.watch_drift().await.unwrap();
    assert_eq!(h.store.all_jobs().len(), 2);

    // A retraining asked for through the API after the drift answers it too.
    h.store.add_drift("m", ended + cooldown + 500);
    h.clock.set(ended + cooldown + 1_000);
    h.store.submit(
        Submission {
            workflow: retraining_workflow(),
            workflow_version: None,
            variables: BTreeMap::new(),
            priority: None,
            owner: "tester".into(),
            origin: "retrain".into(),
            model: Some("m".into()),
        },
        ExecutorKind::Local,
    );
    h.clock.set(ended + cooldown + 2_000);
    h.engine.watch_drift().await.unwrap();
    let origins: Vec<String> = h.store.all_jobs().into_iter().map(|j| j.origin).collect();
    assert_eq!(origins, vec!["drift", "drift", "retrain"]);
}

#[tokio::test]
async fn the_retraining_cool_down_is_a_setting() {
    let h = Harness::new(2, 0);
    let engine = Engine::new(
        SchedulerSettings {
            retrain_cooldown_secs: 0,
            ..settings(0)
        },
        h.folders.host(2),
        "host-b-1".to_owned(),
        EngineParts {
            store: h.store.clone(),
            executor: h.executor.clone(),
            deployer: h.deployer.clone(),
            clock: h.clock.clone(),
            metrics: Arc::new(NoMetrics),
        },
    );
    h.store.set_retraining("m", retraining_workflow(), Some(1));
    h.store.add_drift("m", 1_500);
    h.clock.set(2_000);
    engine.watch_drift().await.unwrap();
    assert_eq!(h.store.all_jobs().len(), 1);
    // Drift while it is pending starts nothing, with or without a cool-down ...
    h.store.add_drift("m", 2_500);
    h.clock.set(3_000);
    engine.watch_drift().await.unwrap();
    assert_eq!(h.store.all_jobs().len(), 1);
    let first = h.store.all_jobs()[0].clone();
    h.store.act(&first.id, JobAction::Cancel);
    h.clock.set(3_100);
    engine.watch_drift().await.unwrap();
    assert_eq!(
        h.store.all_jobs().len(),
        1,
        "drift seen while it was pending"
    );
    // ... and without one, drift right after its end starts the next.
    h.store.add_drift("m", 3_000);
    h.clock.set(3_200);
    engine.watch_drift().await.unwrap();
    assert_eq!(h.store.all_jobs().len(), 2);
}

// ---------------------------------------------------------------------------------------------
// The deploy task

/// Train a linear regression on `y = slope·x + 1` (x = 0..10) with the built-in task; its ONNX
/// bytes.
fn regression(folders: &Folders, name: &str, slope: f64) -> Vec<u8> {
    let data = folders.data();
    let csv = data.join(format!("{name}.csv"));
    let rows: String = (0..10)
        .map(|x| format!("{x},{}\n", slope * f64::from(x) + 1.0))
        .collect();
    std::fs::write(&csv, format!("x,y\n{rows}")).unwrap();
    let dir = data.join(name);
    std::fs::create_dir_all(&dir).unwrap();
    let reads = crate::sandbox::ReadPolicy {
        roots: vec![data.clone()],
        ..Default::default()
    };
    let params = json!({"train": csv, "label": "y", "algorithm": "linear_regression"});
    let out = crate::ml::run_builtin("train", params.as_object().unwrap(), &dir, &reads).unwrap();
    std::fs::read(&out.variables["MODEL"]).unwrap()
}

fn deploy_workflow(params: Value) -> String {
    let task = json!({"name": "deploy", "kind": "deploy", "params": params});
    json!({"name": "ship", "tasks": [task]}).to_string()
}

impl<X: TaskExecutor> Harness<X> {
    /// Run a one-task deploy workflow to its end; the job id. The workflow is not validated,
    /// so that the task's own checks can be seen.
    async fn deploy(&self, params: Value) -> String {
        let workflow = serde_json::from_str(&deploy_workflow(params)).unwrap();
        let job = self.submit_workflow(workflow, None);
        ended(self.tick().await).await;
        job
    }

    fn log(&self, job: &str, stream: &str) -> String {
        std::fs::read_to_string(self.attempt_dir(job, "deploy", 1).join(stream)).unwrap()
    }

    fn results(&self, job: &str) -> (BTreeMap<String, String>, Value) {
        let task = self.store.task_now(job, "deploy");
        (
            serde_json::from_str(&task.variables).unwrap(),
            serde_json::from_str(&task.metrics).unwrap(),
        )
    }
}

#[tokio::test]
async fn a_deploy_task_deploys_through_the_registry_beside_a_full_pool() {
    let h = Harness::new(1, 0);
    let busy = h.submit(&one_task("busy", ""), None);
    let running = h.tick().await;
    until("the busy task", || h.executor.running().len() == 1).await;

    let data = h.folders.data();
    std::fs::write(data.join("model.onnx"), b"candidate").unwrap();
    std::fs::write(data.join("train.csv"), "a,b,y\n1,2,x\n").unwrap();
    let job = h
        .deploy(json!({
            "model_name": "m", "model": data.join("model.onnx"),
            "features": ["a", "b"], "classes": "[\"x\", \"y\"]", "label": "y",
            "training_data": data.join("train.csv"), "baseline_size": "20",
        }))
        .await;
    assert_eq!(
        h.store.task_now(&job, "deploy").state,
        TaskState::Finished,
        "the deploy task takes no CPU slot"
    );
    let (variables, metrics) = h.results(&job);
    assert_eq!(
        variables,
        BTreeMap::from([
            ("DEPLOYED".to_owned(), "true".to_owned()),
            ("MODEL_NAME".to_owned(), "m".to_owned()),
            ("MODEL_VERSION".to_owned(), "1".to_owned()),
        ])
    );
    assert_eq!(
        metrics,
        json!({}),
        "nothing served before: nothing compared"
    );
    assert_eq!(
        h.deployer.deployed(),
        vec![NewModelVersion {
            model: "m".into(),
            onnx: b"candidate".to_vec(),
            training_csv: Some(b"a,b,y\n1,2,x\n".to_vec()),
            baseline_size: Some(20),
            label_column: Some("y".into()),
            class_names: Some(vec!["x".into(), "y".into()]),
            feature_names: Some(vec!["a".into(), "b".into()]),
            source: format!("job:{job}"),
            append: false,
        }]
    );
    let stdout = h.log(&job, crate::runner::STDOUT_FILE);
    assert!(
        stdout.contains(&format!("maas: deployed m version 1 (from job {job})")),
        "{stdout}"
    );
    assert!(stdout.contains("maas: export DEPLOYED=true"), "{stdout}");

    h.executor.end(&key(&busy, "t", 1), ok(&[]));
    ended(running).await;
}

#[tokio::test]
async fn a_deploy_task_names_what_is_wrong_with_its_parameters() {
    let h = Harness::new(1, 0);
    let data = h.folders.data();
    std::fs::write(data.join("model.onnx"), b"candidate").unwrap();
    let outside = tempfile::NamedTempFile::new().unwrap();
    let cases = [
        (
            json!({"model_name": "m", "model": data.join("model.onnx"), "colour": "red"}),
            "deploy has no parameter 'colour'",
        ),
        (
            json!({"model": data.join("model.onnx")}),
            "params.model_name is required",
        ),
        (
            json!({"model_name": "a/b", "model": data.join("model.onnx")}),
            "model name 'a/b' is not allowed",
        ),
        (
            json!({"model_name": "m", "model": outside.path()}),
            "it is outside the folders tasks may read",
        ),
        (
            json!({"model_name": "m", "model": data.join("model.onnx"), "compare": "maybe"}),
            "params.compare must be true or false, got \"maybe\"",
        ),
        (
            json!({"model_name": "m", "model": data.join("model.onnx"), "append": "yes"}),
            "params.append must be true or false, got \"yes\"",
        ),
        (
            json!({"model_name": "m", "model": data.join("model.onnx"), "baseline_size": "-1"}),
            "params.baseline_size must be a positive integer, got -1",
        ),
    ];
    for (params, expected) in cases {
        let job = h.deploy(params).await;
        let task = h.store.task_now(&job, "deploy");
        assert_eq!(task.state, TaskState::Failed);
        let error = task.error.unwrap();
        assert!(error.contains(expected), "{error}");
        assert!(h
            .log(&job, crate::runner::STDERR_FILE)
            .contains(&format!("maas: task failed: {error}")));
    }
    assert!(h.deployer.deployed().is_empty());
}

#[tokio::test]
async fn a_retrained_model_goes_live_only_if_it_scores_at_least_as_well() {
    let h = Harness::new(1, 0);
    let good = regression(&h.folders, "good", 2.0);
    let bad = regression(&h.folders, "bad", -3.0);
    let data = h.folders.data();
    let holdout = data.join("holdout.csv");
    let rows: String = (10..15).map(|x| format!("{x},{}\n", 2 * x + 1)).collect();
    std::fs::write(&holdout, format!("x,y\n{rows}")).unwrap();
    std::fs::write(data.join("good.onnx"), &good).unwrap();
    std::fs::write(data.join("bad.onnx"), &bad).unwrap();
    let params = |candidate: &str| {
        json!({"model_name": "m", "model": data.join(candidate), "label": "y",
               "holdout": holdout, "task": "regression"})
    };

    // The champion serves; a worse challenger is kept out, and that is recorded.
    assert_eq!(h.deployer.add_version("m", good.clone()), 1);
    let job = h.deploy(params("bad.onnx")).await;
    let (variables, metrics) = h.results(&job);
    assert_eq!(variables["DEPLOYED"], "false");
    assert_eq!(variables["MODEL_VERSION"], "1");
    let comparison = &metrics["comparison"];
    assert_eq!(comparison["metric"], "rmse");
    assert_eq!(comparison["higher_is_better"], false);
    assert_eq!(comparison["current_version"], 1);
    assert_eq!(comparison["deployed"], false);
    assert!(comparison["candidate_score"].as_f64() > comparison["current_score"].as_f64());
    assert!(h.deployer.deployed().is_empty());
    let rejections = h.deployer.rejections();
    assert_eq!(rejections.len(), 1);
    assert_eq!((rejections[0].0.as_str(), rejections[0].1), ("m", 1));
    assert_eq!(
        rejections[0].2,
        json!({"job": job, "comparison": comparison})
    );
    let stdout = h.log(&job, crate::runner::STDOUT_FILE);
    assert!(
        stdout.contains("maas: rmse on the holdout: current version 1 "),
        "{stdout}"
    );
    assert!(
        stdout.contains("the new model is worse than version 1: kept undeployed"),
        "{stdout}"
    );

    // A better challenger goes live.
    h.deployer.add_version("m", bad.clone());
    let job = h.deploy(params("good.onnx")).await;
    let (variables, metrics) = h.results(&job);
    assert_eq!(variables["DEPLOYED"], "true");
    assert_eq!(variables["MODEL_VERSION"], "3");
    assert_eq!(metrics["comparison"]["current_version"], 2);
    assert_eq!(metrics["comparison"]["deployed"], true);

    // `compare: false` deploys whatever it is given.
    let mut unchecked = params("bad.onnx");
    unchecked["compare"] = json!(false);
    let job = h.deploy(unchecked).await;
    let (variables, metrics) = h.results(&job);
    assert_eq!(
        (
            variables["DEPLOYED"].as_str(),
            variables["MODEL_VERSION"].as_str()
        ),
        ("true", "4")
    );
    assert_eq!(metrics, json!({}));
    assert_eq!(h.deployer.rejections().len(), 1);
}
