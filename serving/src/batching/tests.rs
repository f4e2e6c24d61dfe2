//! The batching queue's unit tests: a doubling model, gated to pile requests up behind a run.
use super::*;
use crate::TensorSpec;
use std::sync::atomic::AtomicUsize;
use std::sync::mpsc;

/// Doubles its input and records the batch sizes it saw. With a gate, its first run signals
/// that it started and then holds until released, so tests can pile requests up behind it
/// without relying on timing.
struct Doubler {
    signature: ModelSignature,
    batches: Mutex<Vec<usize>>,
    /// The name of the thread each run was on.
    threads: Mutex<Vec<String>>,
    gate: Mutex<Option<(mpsc::Sender<()>, mpsc::Receiver<()>)>>,
    active: AtomicUsize,
    most_active: AtomicUsize,
}

struct Gate {
    started: mpsc::Receiver<()>,
    release: mpsc::Sender<()>,
}

impl Gate {
    fn wait_started(&self) {
        self.started.recv_timeout(Duration::from_secs(10)).unwrap();
    }
    fn open(self) {
        self.release.send(()).unwrap();
    }
}

fn doubler() -> Arc<Doubler> {
    let spec = |name: &str| TensorSpec {
        name: name.into(),
        element_type: ElementType::Float32,
        shape: vec![Dim::Symbolic("N".into()), Dim::Fixed(2)],
    };
    Arc::new(Doubler {
        signature: ModelSignature {
            inputs: vec![spec("x")],
            outputs: vec![spec("y")],
        },
        batches: Mutex::new(Vec::new()),
        threads: Mutex::new(Vec::new()),
        gate: Mutex::new(None),
        active: AtomicUsize::new(0),
        most_active: AtomicUsize::new(0),
    })
}

fn gated() -> (Arc<Doubler>, Gate) {
    let model = doubler();
    let (started_tx, started) = mpsc::channel();
    let (release, release_rx) = mpsc::channel();
    *model.gate.lock() = Some((started_tx, release_rx));
    (model, Gate { started, release })
}

impl LoadedModel for Doubler {
    fn signature(&self) -> &ModelSignature {
        &self.signature
    }
    fn infer(&self, inputs: Vec<Tensor>) -> Result<Vec<Tensor>, ServingError> {
        let now = self.active.fetch_add(1, Ordering::SeqCst) + 1;
        self.most_active.fetch_max(now, Ordering::SeqCst);
        let gate = self.gate.lock().take();
        if let Some((started, release)) = gate {
            started.send(()).unwrap();
            release.recv_timeout(Duration::from_secs(5)).unwrap();
        }
        let x = &inputs[0];
        self.batches.lock().push(x.shape[0]);
        self.threads
            .lock()
            .push(std::thread::current().name().unwrap_or("").to_owned());
        let TensorData::Float32(v) = &x.data else {
            panic!("not f32")
        };
        self.active.fetch_sub(1, Ordering::SeqCst);
        Ok(vec![Tensor {
            shape: x.shape.clone(),
            data: TensorData::Float32(v.iter().map(|a| a * 2.0).collect()),
        }])
    }
}

fn rows(values: &[[f32; 2]]) -> Vec<Tensor> {
    vec![Tensor::new(
        vec![values.len(), 2],
        TensorData::Float32(values.iter().flatten().copied().collect()),
    )
    .unwrap()]
}

#[derive(Default)]
struct Counts {
    dropped: Mutex<Vec<DropReason>>,
}
impl BatchObserver for Counts {
    fn dropped(&self, reason: DropReason) {
        self.dropped.lock().push(reason);
    }
}

fn start(
    instances: Vec<Arc<Doubler>>,
    config: BatchConfig,
    observer: Arc<dyn BatchObserver>,
) -> BatchQueue {
    let instances = instances
        .into_iter()
        .map(|m| m as Arc<dyn LoadedModel>)
        .collect();
    BatchQueue::start("m", 1, instances, config, observer).unwrap()
}

fn limit(max_batch_size: usize) -> BatchConfig {
    BatchConfig {
        max_batch_size,
        ..BatchConfig::default()
    }
}

fn wait(
    rx: oneshot::Receiver<Result<Completion, ServingError>>,
) -> Result<Completion, ServingError> {
    rx.blocking_recv().unwrap()
}

#[test]
fn a_lone_request_runs_at_once_and_answers_its_own_rows() {
    let model = doubler();
    let queue = start(vec![model], BatchConfig::default(), Arc::new(NoObserver));
    let done = wait(queue.submit(rows(&[[1.0, 2.0], [3.0, 4.0]]), None).unwrap()).unwrap();
    assert_eq!(
        done.outputs[0].data,
        TensorData::Float32(vec![2.0, 4.0, 6.0, 8.0])
    );
    assert_eq!(done.batch_rows, 2);
    assert!(queue.is_batching());
}

#[test]
fn queued_requests_are_joined_and_split_back_in_order() {
    let (model, gate) = gated();
    let queue = start(vec![model.clone()], limit(8), Arc::new(NoObserver));
    let first = queue.submit(rows(&[[0.0, 0.0]]), None).unwrap();
    gate.wait_started();
    let sent: Vec<Vec<[f32; 2]>> = (0..5)
        .map(|i| {
            let x = i as f32;
            [[x, x + 0.5], [x + 10.0, x + 10.5]][..(i % 2 + 1)].to_vec()
        })
        .collect();
    let answers: Vec<_> = sent
        .iter()
        .map(|r| queue.submit(rows(r), None).unwrap())
        .collect();
    gate.open();
    wait(first).unwrap();
    for (sent, rx) in sent.iter().zip(answers) {
        let done = wait(rx).unwrap();
        let want: Vec<f32> = sent.iter().flatten().map(|v| v * 2.0).collect();
        assert_eq!(done.outputs[0].data, TensorData::Float32(want));
        assert_eq!(done.outputs[0].shape, vec![sent.len(), 2]);
        assert_eq!(done.batch_rows, 7, "the five requests hold 1+2+1+2+1 rows");
    }
    assert_eq!(*model.batches.lock(), vec![1, 7]);
}

#[test]
fn batches_never_exceed_the_limit_and_off_means_one_request_per_run() {
    for (max, want) in [(3, vec![1, 3, 2]), (1, vec![1, 1, 1, 1, 1, 1])] {
        let (model, gate) = gated();
        let queue = start(vec![model.clone()], limit(max), Arc::new(NoObserver));
        let first = queue.submit(rows(&[[0.0, 0.0]]), None).unwrap();
        gate.wait_started();
        let rest: Vec<_> = (0..5)
            .map(|_| queue.submit(rows(&[[1.0, 1.0]]), None).unwrap())
            .collect();
        gate.open();
        wait(first).unwrap();
        for rx in rest {
            wait(rx).unwrap();
        }
        assert_eq!(*model.batches.lock(), want, "max_batch_size {max}");
    }
}

#[test]
fn the_queue_delay_gathers_requests_that_arrive_apart() {
    let model = doubler();
    let config = BatchConfig {
        max_batch_size: 2,
        // Long enough that the second request always arrives within it; the batch is full at
        // two rows, so the test never waits the whole delay.
        max_queue_delay: Duration::from_secs(10),
        ..BatchConfig::default()
    };
    let queue = start(vec![model.clone()], config, Arc::new(NoObserver));
    let a = queue.submit(rows(&[[1.0, 1.0]]), None).unwrap();
    std::thread::sleep(Duration::from_millis(20));
    let b = queue.submit(rows(&[[2.0, 2.0]]), None).unwrap();
    wait(a).unwrap();
    wait(b).unwrap();
    assert_eq!(*model.batches.lock(), vec![2]);
}

#[test]
fn a_full_queue_refuses_and_a_long_wait_times_out() {
    let (model, gate) = gated();
    let counts = Arc::new(Counts::default());
    let config = BatchConfig {
        max_batch_size: 1,
        queue_capacity: 2,
        queue_timeout: Duration::from_millis(50),
        ..BatchConfig::default()
    };
    let queue = start(vec![model.clone()], config, counts.clone());
    let running = queue.submit(rows(&[[0.0, 0.0]]), None).unwrap();
    gate.wait_started();
    let late1 = queue.submit(rows(&[[1.0, 1.0]]), None).unwrap();
    let late2 = queue.submit(rows(&[[1.0, 1.0]]), None).unwrap();
    assert!(matches!(
        queue.submit(rows(&[[1.0, 1.0]]), None),
        Err(ServingError::QueueFull { capacity: 2, .. })
    ));
    std::thread::sleep(Duration::from_millis(80));
    gate.open();
    wait(running).unwrap();
    for rx in [late1, late2] {
        assert!(matches!(
            wait(rx),
            Err(ServingError::QueueTimeout { limit_ms: 50, .. })
        ));
    }
    assert_eq!(
        *model.batches.lock(),
        vec![1],
        "timed-out requests never ran"
    );
    assert_eq!(
        *counts.dropped.lock(),
        vec![
            DropReason::QueueFull,
            DropReason::Timeout,
            DropReason::Timeout
        ]
    );
}

#[test]
fn requests_whose_caller_left_are_not_run() {
    let (model, gate) = gated();
    let counts = Arc::new(Counts::default());
    let queue = start(vec![model.clone()], limit(1), counts.clone());
    let running = queue.submit(rows(&[[0.0, 0.0]]), None).unwrap();
    gate.wait_started();
    drop(queue.submit(rows(&[[1.0, 1.0]]), None).unwrap());
    let hung_up: ClientProbe = Arc::new(|| false);
    let _unanswered = queue.submit(rows(&[[3.0, 3.0]]), Some(hung_up)).unwrap();
    let kept = queue.submit(rows(&[[2.0, 2.0]]), None).unwrap();
    gate.open();
    wait(running).unwrap();
    assert_eq!(
        wait(kept).unwrap().outputs[0].data,
        TensorData::Float32(vec![4.0, 4.0])
    );
    assert_eq!(
        *model.batches.lock(),
        vec![1, 1],
        "the abandoned request never ran"
    );
    assert_eq!(
        *counts.dropped.lock(),
        vec![DropReason::ClientGone, DropReason::ClientGone]
    );
}

#[test]
fn several_instances_run_at_the_same_time() {
    // Two instance threads share one gated model: the first run holds until released, so the
    // second request can only be answered by the other instance, running beside it.
    let (model, gate) = gated();
    let queue = start(
        vec![model.clone(), model.clone()],
        limit(1),
        Arc::new(NoObserver),
    );
    let x = queue.submit(rows(&[[1.0, 1.0]]), None).unwrap();
    gate.wait_started();
    let y = queue.submit(rows(&[[2.0, 2.0]]), None).unwrap();
    wait(y).unwrap();
    gate.open();
    wait(x).unwrap();
    assert_eq!(model.most_active.load(Ordering::SeqCst), 2);
    assert_eq!(queue.instances(), 2);
}

#[test]
fn a_model_without_a_batch_axis_is_never_batched() {
    let model = doubler();
    let mut fixed = model.signature.clone();
    fixed.inputs[0].shape[0] = Dim::Fixed(1);
    let model = Arc::new(Doubler {
        signature: fixed,
        batches: Mutex::new(Vec::new()),
        threads: Mutex::new(Vec::new()),
        gate: Mutex::new(None),
        active: AtomicUsize::new(0),
        most_active: AtomicUsize::new(0),
    });
    let queue = start(vec![model], BatchConfig::default(), Arc::new(NoObserver));
    assert!(!queue.is_batching());
    assert!(!start(vec![doubler()], limit(1), Arc::new(NoObserver)).is_batching());
}

#[test]
fn warm_up_runs_every_instance_at_the_largest_batch() {
    let (a, b) = (doubler(), doubler());
    let instances: Vec<Arc<dyn LoadedModel>> = vec![a.clone(), b.clone()];
    warm_up(&instances, &limit(16)).unwrap();
    assert_eq!(*a.batches.lock(), vec![16]);
    assert_eq!(*b.batches.lock(), vec![16]);
}

/// Inline runs allowed whatever a run costs, so a slow or loaded machine does not change which
/// thread runs what.
fn inline_always(max_batch_size: usize) -> BatchConfig {
    BatchConfig {
        max_batch_size,
        inline_max: Duration::from_secs(10),
        ..BatchConfig::default()
    }
}

/// Waits until no instance is busy: an instance thread answers before it marks itself free.
fn settle(queue: &BatchQueue) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while queue.shared.state.lock().busy.iter().any(|&b| b) {
        assert!(Instant::now() < deadline, "an instance stayed busy");
        std::thread::sleep(Duration::from_millis(1));
    }
}

fn answer(dispatched: Dispatched) -> Result<Completion, ServingError> {
    match dispatched {
        Dispatched::Done(done) => done,
        Dispatched::Queued(rx) => wait(rx),
    }
}

#[test]
fn a_cheap_request_on_an_idle_queue_runs_on_the_callers_thread() {
    let model = doubler();
    let queue = start(vec![model.clone()], inline_always(8), Arc::new(NoObserver));
    // The first run's cost is unknown: it queues, and its thread measures it.
    let first = queue.dispatch(rows(&[[1.0, 2.0]]), None).unwrap();
    assert!(matches!(first, Dispatched::Queued(_)));
    answer(first).unwrap();
    settle(&queue);
    let second = queue.dispatch(rows(&[[3.0, 4.0]]), None).unwrap();
    let Dispatched::Done(done) = second else {
        panic!("a cheap request on an idle queue should run inline")
    };
    let done = done.unwrap();
    assert_eq!(done.outputs[0].data, TensorData::Float32(vec![6.0, 8.0]));
    assert_eq!(done.queue_wait, Duration::ZERO);
    let here = std::thread::current().name().unwrap_or("").to_owned();
    assert_eq!(*model.threads.lock(), vec!["maas-infer-0".to_owned(), here]);
}

#[test]
fn inline_off_or_a_queue_delay_always_queues() {
    for config in [
        BatchConfig {
            inline_max: Duration::ZERO,
            ..BatchConfig::default()
        },
        BatchConfig {
            max_queue_delay: Duration::from_micros(1),
            ..BatchConfig::default()
        },
    ] {
        let model = doubler();
        let queue = start(vec![model.clone()], config.clone(), Arc::new(NoObserver));
        for _ in 0..3 {
            let dispatched = queue.dispatch(rows(&[[1.0, 1.0]]), None).unwrap();
            assert!(matches!(dispatched, Dispatched::Queued(_)), "{config:?}");
            answer(dispatched).unwrap();
        }
        assert!(model.threads.lock().iter().all(|t| t == "maas-infer-0"));
    }
}

#[test]
fn requests_queued_behind_an_inline_run_are_batched_by_the_caller() {
    let model = doubler();
    let queue = Arc::new(start(
        vec![model.clone()],
        inline_always(8),
        Arc::new(NoObserver),
    ));
    answer(queue.dispatch(rows(&[[0.0, 0.0]]), None).unwrap()).unwrap();
    settle(&queue);
    // The next run holds its instance (inline, on another thread) until released.
    let (started_tx, started) = mpsc::channel();
    let (release, release_rx) = mpsc::channel();
    *model.gate.lock() = Some((started_tx, release_rx));
    let inline = {
        let queue = queue.clone();
        std::thread::Builder::new()
            .name("caller".into())
            .spawn(move || answer(queue.dispatch(rows(&[[1.0, 1.0]]), None).unwrap()))
            .unwrap()
    };
    started.recv_timeout(Duration::from_secs(10)).unwrap();
    let queued: Vec<_> = (0..3)
        .map(|i| {
            let dispatched = queue.dispatch(rows(&[[i as f32, 0.0]]), None).unwrap();
            assert!(
                matches!(dispatched, Dispatched::Queued(_)),
                "the instance is busy"
            );
            dispatched
        })
        .collect();
    release.send(()).unwrap();
    assert_eq!(
        inline.join().unwrap().unwrap().outputs[0].data,
        TensorData::Float32(vec![2.0, 2.0])
    );
    for (i, dispatched) in queued.into_iter().enumerate() {
        let done = answer(dispatched).unwrap();
        assert_eq!(
            done.outputs[0].data,
            TensorData::Float32(vec![2.0 * i as f32, 0.0])
        );
        assert_eq!(done.batch_rows, 3);
    }
    assert_eq!(*model.batches.lock(), vec![1, 1, 3]);
    assert_eq!(
        model.threads.lock()[1..],
        ["caller".to_owned(), "caller".to_owned()],
        "the caller ran what queued behind it; no thread was woken"
    );
}
