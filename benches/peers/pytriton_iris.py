"""Triton Inference Server through PyTriton serving tests/fixtures/iris_logreg.onnx as `iris`.

The infer function runs the ONNX file on ONNX Runtime's CPU provider (default session options),
the same model and engine as maas's ort-cpu backend. PyTriton starts its bundled `tritonserver`
as a child process; Triton answers HTTP (Open Inference Protocol) and gRPC, queues requests in its
dynamic batcher and hands each batch to this process, where `@batch` stacks the requests' inputs
into one [N, 4] array.

    python benches/peers/pytriton_iris.py --port PORT   # gRPC on PORT+1, metrics on PORT+2

Batching: max_batch_size 32 (maas's default), PyTriton's DynamicBatcher defaults otherwise
(max_queue_delay_microseconds 0: no waiting for a batch to fill). One model instance.
SIGTERM or SIGINT stops Triton (and its python-backend stub) before this process exits.
"""

import argparse
import logging
import pathlib
import signal

import numpy as np
import onnxruntime as ort
from pytriton.decorators import batch
from pytriton.model_config import ModelConfig, Tensor
from pytriton.triton import Triton, TritonConfig, TritonLifecyclePolicy

MODEL = pathlib.Path(__file__).resolve().parents[2] / "tests" / "fixtures" / "iris_logreg.onnx"
MAX_BATCH_SIZE = 32


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True, help="HTTP port; gRPC +1, metrics +2")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")

    session = ort.InferenceSession(str(MODEL), providers=["CPUExecutionProvider"])
    output_names = [o.name for o in session.get_outputs()]  # label, probabilities

    @batch
    def infer(float_input: np.ndarray):
        label, probabilities = session.run(output_names, {"float_input": float_input})
        return {"label": label.reshape(-1, 1), "probabilities": probabilities}

    # Python's default SIGTERM handling exits without cleanup, which would leave tritonserver
    # behind until its parent-death signal: make SIGTERM a KeyboardInterrupt, which serve() turns
    # into a stop of Triton.
    def interrupt(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupt)

    config = TritonConfig(
        http_address="127.0.0.1",
        http_port=args.port,
        grpc_address="127.0.0.1",
        grpc_port=args.port + 1,
        metrics_port=args.port + 2,
    )
    # By default PyTriton starts Triton first and loads the model into it afterwards, so
    # /v2/health/ready answers 200 for a moment while `iris` is not there yet (404s for a caller
    # that polls it and then starts its load). With the model written to a local model store
    # before Triton starts, Triton loads it at startup and only then reports ready (its default
    # strict readiness).
    policy = TritonLifecyclePolicy(launch_triton_on_startup=False, local_model_store=True)
    with Triton(config=config, triton_lifecycle_policy=policy) as triton:
        triton.bind(
            model_name="iris",
            infer_func=infer,
            # Per-row shapes: Triton adds the batch dimension (float_input [N, 4]).
            inputs=[Tensor(name="float_input", dtype=np.float32, shape=(4,))],
            outputs=[
                # Triton has no per-row scalar for a batched model (`dims` must not be empty):
                # `label` goes out as [N, 1].
                Tensor(name="label", dtype=np.int64, shape=(1,)),
                Tensor(name="probabilities", dtype=np.float32, shape=(3,)),
            ],
            config=ModelConfig(max_batch_size=MAX_BATCH_SIZE),
        )
        triton.serve()


if __name__ == "__main__":
    main()
