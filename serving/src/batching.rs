//! Dynamic batching: one bounded request queue per served version, drained by one thread per
//! model instance.
//!
//! A request's rows wait in the queue until an instance is free. An instance takes the oldest
//! request and, when the model has a dynamic batch axis, the requests behind it whose rows fit
//! (same trailing shape, at most `max_batch_size` rows in all), waiting up to `max_queue_delay`
//! for more to arrive. The default delay is zero: a lone request never waits for company, and
//! batches form by themselves when requests arrive faster than one instance answers them.
//! The joined tensors run once; the outputs are split back along axis 0.
//!
//! A cheap request on an idle queue skips all that and runs on the caller's own thread
//! ([`BatchQueue::dispatch`]): handing it to an instance thread and its answer back would cost
//! two thread wake-ups, more than the model. Whoever holds an instance looks at the queue before
//! letting it go, so a thread is woken only when an instance is free and nobody else will come
//! back for the work.
//!
//! Backpressure is explicit: a full queue refuses at once ([`ServingError::QueueFull`]); a request
//! that waited longer than `queue_timeout` is answered [`ServingError::QueueTimeout`] without
//! running; a request whose caller went away (its receiver dropped) is skipped before compute.
//! Every drop is reported to the [`BatchObserver`] with its reason.

use std::collections::VecDeque;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use parking_lot::{Condvar, Mutex};
use tokio::sync::oneshot;

use crate::{Dim, ElementType, LoadedModel, ModelSignature, ServingError, Tensor, TensorData};

/// The default inline budget: a request expected to compute within it runs on the caller's
/// thread when the queue is idle. A hand-off to an instance thread and back costs two wake-ups
/// (tens of microseconds on a loaded machine); a model run under this budget costs less than
/// parsing its request, so running it in place holds the caller's other connections back little.
pub const DEFAULT_INLINE_MAX: Duration = Duration::from_micros(200);

/// How long a caller that ran inline keeps its instance to run what queued behind it, in
/// multiples of `inline_max`: long enough that under steady load the HTTP workers run the
/// batches themselves and no instance thread is woken, short enough that the caller's own
/// connections are not held up for long.
const DRAIN_RUNS: u32 = 4;

/// How a version's queue forms batches and pushes back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchConfig {
    /// Most rows run together; 1 turns batching off.
    pub max_batch_size: usize,
    /// How long the oldest request may wait for others to join it; zero never delays.
    pub max_queue_delay: Duration,
    /// Most requests waiting; one more is refused with [`ServingError::QueueFull`].
    pub queue_capacity: usize,
    /// Longest a request may wait before it is answered [`ServingError::QueueTimeout`].
    pub queue_timeout: Duration,
    /// Requests expected to compute within this run on the caller's thread when the queue is
    /// idle (see [`BatchQueue::dispatch`]); zero always queues.
    pub inline_max: Duration,
}

impl Default for BatchConfig {
    fn default() -> Self {
        BatchConfig {
            max_batch_size: 32,
            max_queue_delay: Duration::ZERO,
            queue_capacity: 1024,
            queue_timeout: Duration::from_secs(5),
            inline_max: DEFAULT_INLINE_MAX,
        }
    }
}

/// Why a queued request was not run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropReason {
    /// The queue was full when it arrived.
    QueueFull,
    /// It waited longer than the queue timeout.
    Timeout,
    /// Its caller stopped waiting for the answer.
    ClientGone,
}

impl DropReason {
    pub fn as_str(self) -> &'static str {
        match self {
            DropReason::QueueFull => "queue_full",
            DropReason::Timeout => "timeout",
            DropReason::ClientGone => "client_gone",
        }
    }
}

/// Receives what a queue does, for metrics. Called on queue and worker threads: keep it cheap.
pub trait BatchObserver: Send + Sync {
    /// The number of requests waiting changed.
    fn queue_depth(&self, _depth: usize) {}
    /// One run of the model finished: how many rows and requests it joined, how long it took.
    fn batch_ran(&self, _rows: usize, _requests: usize, _compute: Duration) {}
    /// A request was not run.
    fn dropped(&self, _reason: DropReason) {}
}

/// An observer that records nothing.
pub struct NoObserver;
impl BatchObserver for NoObserver {}

/// A request's answer and what it cost.
#[derive(Debug)]
pub struct Completion {
    pub outputs: Vec<Tensor>,
    /// Time from submission until its batch started.
    pub queue_wait: Duration,
    /// Time the model took for the whole batch it ran in.
    pub compute: Duration,
    /// Rows in that batch, this request's included.
    pub batch_rows: usize,
}

type Reply = oneshot::Sender<Result<Completion, ServingError>>;

/// Says whether the caller of a request is still connected (an HTTP server that does not cancel
/// its handlers when a client leaves can look at the socket). Asked once, just before compute.
pub type ClientProbe = Arc<dyn Fn() -> bool + Send + Sync>;

struct Job {
    inputs: Vec<Tensor>,
    rows: usize,
    enqueued: Instant,
    reply: Reply,
    client: Option<ClientProbe>,
}

impl Job {
    /// Whether nobody waits for this answer any more.
    fn abandoned(&self) -> bool {
        self.reply.is_closed() || self.client.as_ref().is_some_and(|alive| !alive())
    }

    /// Whether `other` can share a run with this job: same inputs with the same non-batch axes.
    fn joins(&self, other: &Job) -> bool {
        self.inputs.len() == other.inputs.len()
            && self.inputs.iter().zip(&other.inputs).all(|(a, b)| {
                a.shape.get(1..) == b.shape.get(1..)
                    && a.data.element_type() == b.data.element_type()
            })
    }
}

struct State {
    jobs: VecDeque<Job>,
    closed: bool,
    /// Instance `i` is running (on its own thread, or inline on a caller's).
    busy: Vec<bool>,
    /// Instance `i`'s thread is waiting on `wake[i]`.
    parked: Vec<bool>,
}

impl State {
    /// An instance whose thread waits with nothing to do, marked as woken: the one to notify
    /// when a request is queued. `None` when every instance is busy: whoever holds one looks at
    /// the queue when it is done, so no thread needs waking.
    fn wake_idle(&mut self) -> Option<usize> {
        let ix = (0..self.busy.len()).find(|&i| self.parked[i] && !self.busy[i])?;
        self.parked[ix] = false;
        Some(ix)
    }
}

struct Shared {
    model: String,
    version: u64,
    config: BatchConfig,
    /// Whether rows of different requests may share a run; cleared for good if a model's outputs
    /// turn out not to follow its batch axis.
    batchable: AtomicBool,
    state: Mutex<State>,
    /// One condition variable per instance thread, so a wake-up reaches the thread that can act.
    wake: Vec<Condvar>,
    instances: Vec<Arc<dyn LoadedModel>>,
    /// Moving average of compute time per row, in nanoseconds (`u64::MAX` until the first run).
    row_cost_ns: AtomicU64,
    observer: Arc<dyn BatchObserver>,
}

impl Shared {
    /// Whether `rows` rows are expected to run within the inline budget.
    fn cheap(&self, rows: usize) -> bool {
        let per_row = self.row_cost_ns.load(Ordering::Relaxed);
        let budget = u64::try_from(self.config.inline_max.as_nanos()).unwrap_or(u64::MAX);
        per_row != u64::MAX && per_row.saturating_mul(rows as u64) <= budget
    }

    /// Fold one run's cost into the moving average (weight 1/8).
    fn record_cost(&self, rows: usize, compute: Duration) {
        let sample =
            u64::try_from(compute.as_nanos() / rows.max(1) as u128).unwrap_or(u64::MAX - 1);
        let old = self.row_cost_ns.load(Ordering::Relaxed);
        let new = if old == u64::MAX {
            sample
        } else {
            old - old / 8 + sample / 8
        };
        self.row_cost_ns
            .store(new.min(u64::MAX - 1), Ordering::Relaxed);
    }

    fn notify(&self, ix: Option<usize>) {
        if let Some(ix) = ix {
            self.wake[ix].notify_one();
        }
    }
}

/// The request queue of one served version and the instance threads that drain it. Dropping it
/// lets the instances finish what is queued, then stop.
pub struct BatchQueue {
    shared: Arc<Shared>,
    workers: Vec<JoinHandle<()>>,
}

impl std::fmt::Debug for BatchQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BatchQueue")
            .field("model", &self.shared.model)
            .field("version", &self.shared.version)
            .field("config", &self.shared.config)
            .field("instances", &self.shared.instances.len())
            .finish_non_exhaustive()
    }
}

/// Whether rows of several requests can run together on a model with this signature: every input
/// and every output has a symbolic axis 0.
pub fn supports_batching(signature: &ModelSignature) -> bool {
    signature.inputs.iter().all(|s| s.has_dynamic_batch())
        && signature.outputs.iter().all(|s| s.has_dynamic_batch())
}

/// What [`BatchQueue::dispatch`] did with a request.
#[derive(Debug)]
pub enum Dispatched {
    /// It ran at once on the caller's thread.
    Done(Result<Completion, ServingError>),
    /// It waits in the queue; the receiver yields its answer (drop it to withdraw the request).
    Queued(oneshot::Receiver<Result<Completion, ServingError>>),
}

impl BatchQueue {
    /// Start one thread per instance. `instances` must hold at least one loaded model; they are
    /// loads of the same file.
    pub fn start(
        model: &str,
        version: u64,
        instances: Vec<Arc<dyn LoadedModel>>,
        mut config: BatchConfig,
        observer: Arc<dyn BatchObserver>,
    ) -> Result<BatchQueue, ServingError> {
        let Some(first) = instances.first() else {
            return Err(ServingError::InvalidModel(
                "a version needs at least one instance".into(),
            ));
        };
        config.max_batch_size = config.max_batch_size.max(1);
        config.queue_capacity = config.queue_capacity.max(1);
        let batchable = config.max_batch_size > 1 && supports_batching(first.signature());
        let count = instances.len();
        let shared = Arc::new(Shared {
            model: model.to_owned(),
            version,
            config,
            batchable: AtomicBool::new(batchable),
            state: Mutex::new(State {
                jobs: VecDeque::new(),
                closed: false,
                busy: vec![false; count],
                parked: vec![false; count],
            }),
            wake: (0..count).map(|_| Condvar::new()).collect(),
            instances,
            row_cost_ns: AtomicU64::new(u64::MAX),
            observer,
        });
        let mut workers = Vec::with_capacity(count);
        for ix in 0..count {
            let shared = shared.clone();
            let handle = std::thread::Builder::new()
                .name(format!("maas-infer-{ix}"))
                .spawn(move || run_instance(&shared, ix))?;
            workers.push(handle);
        }
        Ok(BatchQueue { shared, workers })
    }

    /// Whether rows of different requests are joined.
    pub fn is_batching(&self) -> bool {
        self.shared.batchable.load(Ordering::Relaxed)
    }

    pub fn config(&self) -> &BatchConfig {
        &self.shared.config
    }

    pub fn instances(&self) -> usize {
        self.shared.instances.len()
    }

    /// Requests waiting now.
    pub fn depth(&self) -> usize {
        self.shared.state.lock().jobs.len()
    }

    /// Queue a request (tensors in the model's input order). The receiver yields its answer; drop
    /// it, or let `client` answer false, to withdraw the request.
    pub fn submit(
        &self,
        inputs: Vec<Tensor>,
        client: Option<ClientProbe>,
    ) -> Result<oneshot::Receiver<Result<Completion, ServingError>>, ServingError> {
        let rows = rows_of(&inputs);
        let mut state = self.shared.state.lock();
        self.enqueue(&mut state, inputs, rows, client)
    }

    /// Run a request on the caller's thread when that is cheapest, else queue it.
    ///
    /// It runs inline when nothing waits in the queue, an instance is free, the queue delay is
    /// zero and its rows are expected to take at most `inline_max`: no thread hand-off, no
    /// wake-up. Before giving the instance back, the caller also runs, in batches, what queued
    /// meanwhile if that is as cheap (for a bounded time), so under load batches still form and
    /// no instance thread needs waking; anything dearer goes to the instance's thread.
    pub fn dispatch(
        &self,
        inputs: Vec<Tensor>,
        client: Option<ClientProbe>,
    ) -> Result<Dispatched, ServingError> {
        let shared = &*self.shared;
        let rows = rows_of(&inputs);
        let mut state = shared.state.lock();
        let free = (0..state.busy.len()).find(|&i| !state.busy[i]);
        let ix = match free {
            Some(ix)
                if state.jobs.is_empty()
                    && !state.closed
                    && shared.config.max_queue_delay.is_zero()
                    && shared.cheap(rows) =>
            {
                ix
            }
            _ => {
                return self
                    .enqueue(&mut state, inputs, rows, client)
                    .map(Dispatched::Queued)
            }
        };
        state.busy[ix] = true;
        drop(state);

        let instance = shared.instances[ix].as_ref();
        let started = Instant::now();
        let result = infer(instance, inputs);
        let compute = started.elapsed();
        shared.observer.batch_ran(rows, 1, compute);
        shared.record_cost(rows, compute);
        let done = result.map(|outputs| Completion {
            outputs,
            queue_wait: Duration::ZERO,
            compute,
            batch_rows: rows,
        });

        // Whatever queued while this ran runs here too, in cheap batches, for up to
        // DRAIN_RUNS × `inline_max`; what is left, or dearer, goes to the instance's thread.
        let drain_until = started + shared.config.inline_max * DRAIN_RUNS;
        let mut state = shared.state.lock();
        loop {
            discard_stale(shared, &mut state.jobs);
            let batchable = shared.batchable.load(Ordering::Relaxed);
            let rows = joinable_rows(&state.jobs, batchable, shared.config.max_batch_size);
            if state.jobs.is_empty() || !shared.cheap(rows) || Instant::now() >= drain_until {
                break;
            }
            let batch = take_batch(&mut state.jobs, batchable, shared.config.max_batch_size);
            let depth = state.jobs.len();
            drop(state);
            shared.observer.queue_depth(depth);
            run_batch(shared, instance, batch);
            state = shared.state.lock();
        }
        state.busy[ix] = false;
        let wake = if state.jobs.is_empty() {
            None
        } else if state.parked[ix] {
            state.parked[ix] = false;
            Some(ix)
        } else {
            state.wake_idle()
        };
        drop(state);
        shared.notify(wake);
        Ok(Dispatched::Done(done))
    }

    fn enqueue(
        &self,
        state: &mut parking_lot::MutexGuard<'_, State>,
        inputs: Vec<Tensor>,
        rows: usize,
        client: Option<ClientProbe>,
    ) -> Result<oneshot::Receiver<Result<Completion, ServingError>>, ServingError> {
        let shared = &*self.shared;
        if state.closed {
            return Err(ServingError::Stopped {
                model: shared.model.clone(),
                version: shared.version,
            });
        }
        if state.jobs.len() >= shared.config.queue_capacity {
            shared.observer.dropped(DropReason::QueueFull);
            return Err(ServingError::QueueFull {
                model: shared.model.clone(),
                version: shared.version,
                capacity: shared.config.queue_capacity,
            });
        }
        let (reply, answer) = oneshot::channel();
        state.jobs.push_back(Job {
            inputs,
            rows,
            enqueued: Instant::now(),
            reply,
            client,
        });
        let depth = state.jobs.len();
        let wake = state.wake_idle();
        parking_lot::MutexGuard::unlocked(state, || {
            shared.notify(wake);
            shared.observer.queue_depth(depth);
        });
        Ok(answer)
    }
}

fn rows_of(inputs: &[Tensor]) -> usize {
    inputs
        .first()
        .and_then(|t| t.shape.first().copied())
        .unwrap_or(1)
}

impl Drop for BatchQueue {
    fn drop(&mut self) {
        self.shared.state.lock().closed = true;
        for wake in &self.shared.wake {
            wake.notify_all();
        }
        // Workers finish the requests already queued (their callers hold the version alive, so
        // normally there are none) and exit; nothing here waits for them.
        self.workers.clear();
    }
}

/// The loop of instance `ix`'s thread: take a batch, run it, answer, until the queue closes.
fn run_instance(shared: &Shared, ix: usize) {
    let instance = shared.instances[ix].as_ref();
    while let Some(batch) = next_batch(shared, ix) {
        run_batch(shared, instance, batch);
        shared.state.lock().busy[ix] = false;
    }
}

/// Wait until instance `ix` is free and there is work, and take the next batch (marking the
/// instance busy); `None` once the queue is closed and empty.
fn next_batch(shared: &Shared, ix: usize) -> Option<Vec<Job>> {
    let config = &shared.config;
    let mut state = shared.state.lock();
    loop {
        state.parked[ix] = false;
        discard_stale(shared, &mut state.jobs);
        if !state.busy[ix] && !state.jobs.is_empty() {
            let batchable = shared.batchable.load(Ordering::Relaxed);
            if batchable && !config.max_queue_delay.is_zero() && !state.closed {
                let oldest = state.jobs.front().map(|j| j.enqueued);
                if let Some(oldest) = oldest {
                    let deadline = oldest + config.max_queue_delay;
                    if joinable_rows(&state.jobs, true, config.max_batch_size)
                        < config.max_batch_size
                        && Instant::now() < deadline
                    {
                        // Wait for company, then look at the queue afresh: another instance
                        // may have taken these requests meanwhile.
                        state.parked[ix] = true;
                        shared.wake[ix].wait_until(&mut state, deadline);
                        continue;
                    }
                }
            }
            let batch = take_batch(&mut state.jobs, batchable, config.max_batch_size);
            state.busy[ix] = true;
            let depth = state.jobs.len();
            // Requests left behind (too many rows, or another shape) go to a free instance.
            let wake = if depth > 0 { state.wake_idle() } else { None };
            drop(state);
            shared.notify(wake);
            shared.observer.queue_depth(depth);
            return Some(batch);
        }
        if state.closed && state.jobs.is_empty() {
            return None;
        }
        state.parked[ix] = true;
        shared.wake[ix].wait(&mut state);
    }
}

/// Answer and remove queued requests that must not run: their caller left, or they waited too
/// long.
fn discard_stale(shared: &Shared, jobs: &mut VecDeque<Job>) {
    let now = Instant::now();
    let timeout = shared.config.queue_timeout;
    jobs.retain_mut(|job| {
        if job.reply.is_closed() {
            shared.observer.dropped(DropReason::ClientGone);
            return false;
        }
        let waited = now.saturating_duration_since(job.enqueued);
        if waited > timeout {
            shared.observer.dropped(DropReason::Timeout);
            let (reply, _) = oneshot::channel();
            let reply = std::mem::replace(&mut job.reply, reply);
            let _ = reply.send(Err(ServingError::QueueTimeout {
                model: shared.model.clone(),
                version: shared.version,
                waited_ms: waited.as_millis() as u64,
                limit_ms: timeout.as_millis() as u64,
            }));
            return false;
        }
        true
    });
}

/// Rows that the oldest request and (when batching) the ones behind it that fit would bring to
/// one run.
fn joinable_rows(jobs: &VecDeque<Job>, batchable: bool, max_rows: usize) -> usize {
    let Some(first) = jobs.front() else {
        return 0;
    };
    let mut rows = first.rows;
    if !batchable {
        return rows;
    }
    for job in jobs.iter().skip(1) {
        if rows >= max_rows {
            break;
        }
        if first.joins(job) && rows + job.rows <= max_rows {
            rows += job.rows;
        }
    }
    rows
}

/// The oldest request, and, when batching, the requests behind it that fit.
fn take_batch(jobs: &mut VecDeque<Job>, batchable: bool, max_rows: usize) -> Vec<Job> {
    let Some(first) = jobs.pop_front() else {
        return Vec::new();
    };
    let mut rows = first.rows;
    let mut batch = vec![first];
    if batchable {
        let mut ix = 0;
        while ix < jobs.len() && rows < max_rows {
            if batch[0].joins(&jobs[ix]) && rows + jobs[ix].rows <= max_rows {
                if let Some(job) = jobs.remove(ix) {
                    rows += job.rows;
                    batch.push(job);
                    continue;
                }
            }
            ix += 1;
        }
    }
    batch
}

fn run_batch(shared: &Shared, instance: &dyn LoadedModel, mut batch: Vec<Job>) {
    // The caller may have left between the take and now; a lone request whose caller is gone
    // does not run at all.
    batch.retain(|job| {
        let gone = job.abandoned();
        if gone {
            shared.observer.dropped(DropReason::ClientGone);
        }
        !gone
    });
    if batch.is_empty() {
        return;
    }
    let started = Instant::now();
    if batch.len() == 1 {
        let mut jobs = batch;
        let Some(job) = jobs.pop() else { return };
        let result = infer(instance, job.inputs);
        let compute = started.elapsed();
        shared.observer.batch_ran(job.rows, 1, compute);
        shared.record_cost(job.rows, compute);
        let _ = job.reply.send(result.map(|outputs| Completion {
            outputs,
            queue_wait: started.saturating_duration_since(job.enqueued),
            compute,
            batch_rows: job.rows,
        }));
        return;
    }

    let rows: Vec<usize> = batch.iter().map(|j| j.rows).collect();
    let total: usize = rows.iter().sum();
    let mut replies = Vec::with_capacity(batch.len());
    let mut parts: Vec<Vec<Tensor>> = Vec::with_capacity(batch.len());
    for job in batch {
        replies.push((job.reply, job.enqueued));
        parts.push(job.inputs);
    }
    let joined = match join_inputs(&parts) {
        Ok(joined) => joined,
        Err(e) => {
            for (reply, _) in replies {
                let _ = reply.send(Err(ServingError::Inference(e.to_string())));
            }
            return;
        }
    };
    let result = infer(instance, joined);
    let compute = started.elapsed();
    shared.observer.batch_ran(total, replies.len(), compute);
    shared.record_cost(total, compute);
    let split = result.and_then(|outputs| split_outputs(outputs, &rows));
    match split {
        Ok(per_request) => {
            for ((reply, enqueued), (outputs, n)) in
                replies.into_iter().zip(per_request.into_iter().zip(&rows))
            {
                let _ = reply.send(Ok(Completion {
                    outputs,
                    queue_wait: started.saturating_duration_since(enqueued),
                    compute,
                    batch_rows: total.max(*n),
                }));
            }
        }
        Err(ServingError::Inference(reason)) if reason.starts_with(SPLIT_FAILED) => {
            // The model's outputs do not follow its batch axis after all: stop joining requests
            // for this version and answer each of these on its own.
            shared.batchable.store(false, Ordering::Relaxed);
            tracing::warn!(
                model = %shared.model,
                version = shared.version,
                reason = %reason,
                "batching turned off for this version"
            );
            for ((reply, enqueued), inputs) in replies.into_iter().zip(parts) {
                let started = Instant::now();
                let result = infer(instance, inputs);
                let compute = started.elapsed();
                let n = result
                    .as_ref()
                    .ok()
                    .and_then(|o| o.first())
                    .and_then(|t| t.shape.first().copied())
                    .unwrap_or(1);
                shared.observer.batch_ran(n, 1, compute);
                let _ = reply.send(result.map(|outputs| Completion {
                    outputs,
                    queue_wait: started.saturating_duration_since(enqueued),
                    compute,
                    batch_rows: n,
                }));
            }
        }
        Err(e) => {
            let message = e.to_string();
            for (reply, _) in replies {
                let _ = reply.send(Err(ServingError::Inference(message.clone())));
            }
        }
    }
}

fn infer(instance: &dyn LoadedModel, inputs: Vec<Tensor>) -> Result<Vec<Tensor>, ServingError> {
    catch_unwind(AssertUnwindSafe(|| instance.infer(inputs))).unwrap_or_else(|_| {
        Err(ServingError::Inference(
            "the backend panicked while running the model".into(),
        ))
    })
}

const SPLIT_FAILED: &str = "cannot split a batched output";

/// Join each input of several requests along axis 0.
fn join_inputs(parts: &[Vec<Tensor>]) -> Result<Vec<Tensor>, ServingError> {
    let Some(first) = parts.first() else {
        return Ok(Vec::new());
    };
    (0..first.len())
        .map(|ix| {
            let tensors: Vec<&Tensor> = parts.iter().filter_map(|p| p.get(ix)).collect();
            concat(&tensors)
        })
        .collect()
}

fn concat(tensors: &[&Tensor]) -> Result<Tensor, ServingError> {
    let Some(first) = tensors.first() else {
        return Err(ServingError::Inference("nothing to join".into()));
    };
    let mut shape = first.shape.clone();
    let rows: usize = tensors
        .iter()
        .map(|t| t.shape.first().copied().unwrap_or(1))
        .sum();
    if let Some(axis0) = shape.first_mut() {
        *axis0 = rows;
    }
    macro_rules! join {
        ($variant:ident) => {{
            let mut all = Vec::with_capacity(tensors.iter().map(|t| t.data.len()).sum());
            for t in tensors {
                match &t.data {
                    TensorData::$variant(v) => all.extend_from_slice(v),
                    _ => {
                        return Err(ServingError::Inference(
                            "requests of different element types were joined".into(),
                        ))
                    }
                }
            }
            TensorData::$variant(all)
        }};
    }
    let data = match first.data.element_type() {
        ElementType::Float32 => join!(Float32),
        ElementType::Float64 => join!(Float64),
        ElementType::Int32 => join!(Int32),
        ElementType::Int64 => join!(Int64),
        ElementType::Bool => join!(Bool),
        ElementType::String => join!(String),
    };
    Tensor::new(shape, data)
}

/// Cut every output back into the requests' rows, in order.
fn split_outputs(outputs: Vec<Tensor>, rows: &[usize]) -> Result<Vec<Vec<Tensor>>, ServingError> {
    let total: usize = rows.iter().sum();
    let mut per_request: Vec<Vec<Tensor>> = rows.iter().map(|_| Vec::new()).collect();
    for output in outputs {
        if output.shape.first() != Some(&total) || total == 0 {
            return Err(ServingError::Inference(format!(
                "{SPLIT_FAILED}: its shape is {:?} for {total} rows",
                output.shape
            )));
        }
        let inner: usize = output.shape[1..].iter().product();
        let mut start = 0;
        for (slot, n) in per_request.iter_mut().zip(rows) {
            let mut shape = output.shape.clone();
            shape[0] = *n;
            let range = start * inner..(start + n) * inner;
            start += n;
            slot.push(Tensor {
                shape,
                data: slice(&output.data, range),
            });
        }
    }
    Ok(per_request)
}

fn slice(data: &TensorData, range: std::ops::Range<usize>) -> TensorData {
    match data {
        TensorData::Float32(v) => TensorData::Float32(v[range].to_vec()),
        TensorData::Float64(v) => TensorData::Float64(v[range].to_vec()),
        TensorData::Int32(v) => TensorData::Int32(v[range].to_vec()),
        TensorData::Int64(v) => TensorData::Int64(v[range].to_vec()),
        TensorData::Bool(v) => TensorData::Bool(v[range].to_vec()),
        TensorData::String(v) => TensorData::String(v[range].to_vec()),
    }
}

/// Zeros shaped like the model's inputs with `rows` rows on every symbolic axis 0 (other symbolic
/// axes get 1): what a warmup or smoke-test run feeds.
pub fn zero_inputs(signature: &ModelSignature, rows: usize) -> Vec<Tensor> {
    signature
        .inputs
        .iter()
        .map(|spec| {
            let shape: Vec<usize> = spec
                .shape
                .iter()
                .enumerate()
                .map(|(axis, d)| match d {
                    Dim::Fixed(n) => *n,
                    Dim::Symbolic(_) if axis == 0 => rows,
                    Dim::Symbolic(_) => 1,
                })
                .collect();
            let n: usize = shape.iter().product();
            let data = match spec.element_type {
                ElementType::Float32 => TensorData::Float32(vec![0.0; n]),
                ElementType::Float64 => TensorData::Float64(vec![0.0; n]),
                ElementType::Int32 => TensorData::Int32(vec![0; n]),
                ElementType::Int64 => TensorData::Int64(vec![0; n]),
                ElementType::Bool => TensorData::Bool(vec![false; n]),
                ElementType::String => TensorData::String(vec![String::new(); n]),
            };
            Tensor { shape, data }
        })
        .collect()
}

/// Run every instance once at the largest batch it will see, so the first real request does not
/// pay for lazy allocations and kernel selection. A failure means the version must not serve.
pub fn warm_up(
    instances: &[Arc<dyn LoadedModel>],
    config: &BatchConfig,
) -> Result<Duration, ServingError> {
    let started = Instant::now();
    for instance in instances {
        let signature = instance.signature();
        let rows = if supports_batching(signature) {
            config.max_batch_size.max(1)
        } else {
            1
        };
        infer(instance.as_ref(), zero_inputs(signature, rows))
            .map_err(|e| ServingError::InvalidModel(format!("the warmup inference failed: {e}")))?;
    }
    Ok(started.elapsed())
}

#[cfg(test)]
mod tests;
