"""gRPC helpers for benches/grpc/run.sh (run with a Python that has tritonclient[grpc], e.g.
target/ci-venv/bin/python):

    payload.py write OUT [--model iris] [--input float_input]
        Writes one framed gRPC message for h2load's -d: a ModelInferRequest (Open Inference
        Protocol, Triton's `inference` proto) for one iris row, FP32 [1, 4] in
        raw_input_contents, behind gRPC's 5-byte prefix (compressed flag 0, big-endian length).
    payload.py show FILE
        Decodes FILE back (prefix and protobuf) and prints it: what h2load will send.
    payload.py check HOST:PORT FILE [--token T] [--model iris] [--input float_input]
        One ModelInfer through tritonclient's InferenceServerClient and one with FILE's exact
        bytes as the request; both must answer with `probabilities` of shape [1, 3] summing to 1,
        and the same ones. Exits non-zero, saying why, otherwise.
"""

import argparse
import struct
import sys

import numpy as np
from tritonclient.grpc import service_pb2

ROW = [5.1, 3.5, 1.4, 0.2]
METHOD = "/inference.GRPCInferenceService/ModelInfer"


def request(model: str, input_name: str) -> service_pb2.ModelInferRequest:
    req = service_pb2.ModelInferRequest(model_name=model)
    tensor = req.inputs.add()
    tensor.name = input_name
    tensor.datatype = "FP32"
    tensor.shape.extend([1, len(ROW)])
    req.raw_input_contents.append(np.asarray(ROW, dtype="<f4").tobytes())
    return req


def frame(message: bytes) -> bytes:
    return struct.pack(">BI", 0, len(message)) + message


def unframe(data: bytes) -> bytes:
    if len(data) < 5:
        sys.exit(f"{len(data)} bytes: shorter than gRPC's 5-byte message prefix")
    flag, length = struct.unpack(">BI", data[:5])
    if flag != 0 or length != len(data) - 5:
        sys.exit(f"bad gRPC prefix: compressed={flag}, length {length} for {len(data) - 5} bytes")
    return data[5:]


def probabilities(response: service_pb2.ModelInferResponse) -> np.ndarray:
    """`probabilities` out of a ModelInferResponse (raw_output_contents or typed contents)."""
    for i, out in enumerate(response.outputs):
        if out.name != "probabilities":
            continue
        if list(out.shape) != [1, 3] or out.datatype != "FP32":
            sys.exit(f"probabilities: {out.datatype} {list(out.shape)}, expected FP32 [1, 3]")
        if response.raw_output_contents:
            return np.frombuffer(response.raw_output_contents[i], dtype="<f4")
        return np.asarray(out.contents.fp32_contents, dtype=np.float32)
    sys.exit(f"no `probabilities` in the response: {[o.name for o in response.outputs]}")


def write(args) -> None:
    data = frame(request(args.model, args.input).SerializeToString())
    with open(args.out, "wb") as f:
        f.write(data)


def show(args) -> None:
    with open(args.file, "rb") as f:
        data = f.read()
    message = unframe(data)
    req = service_pb2.ModelInferRequest.FromString(message)
    print(f"{len(data)} bytes: prefix compressed=0 length={len(message)}")
    print(req, end="")
    for raw in req.raw_input_contents:
        print("raw_input_contents as <f4:", np.frombuffer(raw, dtype="<f4").tolist())


def check(args) -> None:
    import grpc
    import tritonclient.grpc as grpcclient

    metadata = (("authorization", f"Bearer {args.token}"),) if args.token else ()
    where = f"{args.target} ({METHOD})"

    # 1. The client library's own request.
    client = grpcclient.InferenceServerClient(url=args.target)
    tensor = grpcclient.InferInput(args.input, [1, len(ROW)], "FP32")
    tensor.set_data_from_numpy(np.asarray([ROW], dtype=np.float32))
    try:
        result = client.infer(args.model, [tensor], headers=dict(metadata), client_timeout=30)
    except Exception as e:  # InferenceServerException and connection errors alike
        sys.exit(f"{where}: tritonclient infer failed: {e}")
    via_client = result.as_numpy("probabilities")
    if via_client is None or via_client.shape != (1, 3):
        sys.exit(f"{where}: tritonclient got probabilities {via_client!r}, expected shape [1, 3]")
    client.close()

    # 2. The benchmark's bytes, exactly as h2load sends them (less the prefix gRPC adds itself).
    with open(args.file, "rb") as f:
        message = unframe(f.read())
    with grpc.insecure_channel(args.target) as channel:
        call = channel.unary_unary(
            METHOD, request_serializer=None, response_deserializer=service_pb2.ModelInferResponse.FromString
        )
        try:
            response = call(message, metadata=metadata, timeout=30)
        except grpc.RpcError as e:
            sys.exit(f"{where}: the payload file's request failed: {e.code().name}: {e.details()}")
    via_payload = probabilities(response)

    for name, p in (("tritonclient", via_client.reshape(-1)), ("payload", via_payload)):
        if not np.isfinite(p).all() or abs(float(p.sum()) - 1.0) > 1e-3:
            sys.exit(f"{where}: {name} probabilities {p.tolist()} do not sum to 1")
    if not np.allclose(via_client.reshape(-1), via_payload, atol=1e-5):
        sys.exit(f"{where}: tritonclient {via_client.tolist()} != payload {via_payload.tolist()}")
    print(f"{args.target}: ModelInfer ok, probabilities {np.round(via_payload, 4).tolist()}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("write")
    p.add_argument("out")
    p = sub.add_parser("show")
    p.add_argument("file")
    p = sub.add_parser("check")
    p.add_argument("target", help="HOST:PORT of the gRPC server")
    p.add_argument("file", help="the payload file `write` made")
    p.add_argument("--token", default="")
    for p in sub.choices.values():
        if p.prog.split()[-1] != "show":
            p.add_argument("--model", default="iris")
            p.add_argument("--input", default="float_input")
    args = parser.parse_args()
    {"write": write, "show": show, "check": check}[args.command](args)


if __name__ == "__main__":
    main()
