"""Drive a running maas with the real tritonclient gRPC client (Open Inference Protocol over gRPC).

Usage: python tritonclient_grpc_check.py HOST:PORT ADMIN_TOKEN VIEWER_TOKEN EXPECTED_JSON

The server must serve model `iris` (tests/fixtures/iris_logreg.onnx) as version 1. Exits non-zero
with a message on the first check that fails; prints "tritonclient grpc: all checks passed"
otherwise.
"""

import json
import sys

import grpc
import numpy as np
import tritonclient.grpc as grpcclient
from tritonclient.grpc import service_pb2, service_pb2_grpc
from tritonclient.utils import InferenceServerException


def expect_error(call, code, needle=None):
    try:
        call()
    except InferenceServerException as e:
        assert e.status() == f"StatusCode.{code}", (code, e.status(), str(e))
        assert needle is None or needle in str(e), (needle, str(e))
        return e
    raise AssertionError(f"expected {code}, the call succeeded")


def main() -> None:
    url, token, viewer, expected_path = sys.argv[1:5]
    expected = json.load(open(expected_path))["iris_logreg"]
    rows = np.array(expected["inputs"], dtype=np.float32)
    want_labels = np.array(expected["outputs"]["label"], dtype=np.int64)
    want_probs = np.array(expected["outputs"]["probabilities"], dtype=np.float32)
    auth = {"authorization": f"Bearer {token}"}
    client = grpcclient.InferenceServerClient(url=url)

    # Health and metadata.
    assert client.is_server_live(headers=auth), "server live"
    assert client.is_server_ready(headers=auth), "server ready"
    assert client.is_model_ready("iris", headers=auth), "model ready"
    assert client.is_model_ready("iris", "1", headers=auth), "version ready"
    meta = client.get_server_metadata(headers=auth, as_json=True)
    assert meta["name"] == "maas" and "model_repository" in meta["extensions"], meta
    model = client.get_model_metadata("iris", headers=auth, as_json=True)
    assert model["inputs"] == [{"name": "float_input", "datatype": "FP32", "shape": ["-1", "4"]}], model
    assert [o["name"] for o in model["outputs"]] == ["label", "probabilities"], model
    assert model["versions"] == ["1"], model

    # tritonclient's own infer: raw_input_contents in, raw_output_contents out.
    inp = grpcclient.InferInput("float_input", list(rows.shape), "FP32")
    inp.set_data_from_numpy(rows)
    outputs = [grpcclient.InferRequestedOutput("label"), grpcclient.InferRequestedOutput("probabilities")]
    result = client.infer("iris", [inp], outputs=outputs, request_id="raw-1", headers=auth)
    assert np.array_equal(result.as_numpy("label"), want_labels), result.as_numpy("label")
    assert np.allclose(result.as_numpy("probabilities"), want_probs, atol=1e-4)
    response = result.get_response()
    assert response.id == "raw-1" and response.model_version == "1", response
    assert len(response.raw_output_contents) == 2, response
    # One output when one is asked for; a version given explicitly.
    result = client.infer("iris", [inp], model_version="1", outputs=[grpcclient.InferRequestedOutput("label")], headers=auth)
    assert result.as_numpy("probabilities") is None
    assert np.array_equal(result.as_numpy("label"), want_labels)

    # Typed contents, through the generated stub tritonclient ships: typed answers come back,
    # with maas's drift parameter, and the caller's traceparent continues in the answer's.
    channel = grpc.insecure_channel(url)
    stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)
    request = service_pb2.ModelInferRequest(model_name="iris", id="typed-1")
    tensor = request.inputs.add()
    tensor.name, tensor.datatype = "float_input", "FP32"
    tensor.shape.extend(rows.shape)
    tensor.contents.fp32_contents.extend(rows.flatten().tolist())
    request.parameters["drift"].string_param = json.dumps({"detector": "adwin"})
    parent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    answer, call = stub.ModelInfer.with_call(
        request, metadata=[("authorization", f"Bearer {token}"), ("traceparent", parent)]
    )
    assert answer.id == "typed-1" and not answer.raw_output_contents, answer
    by_name = {o.name: o for o in answer.outputs}
    assert list(by_name["label"].contents.int64_contents) == want_labels.tolist(), by_name["label"]
    assert np.allclose(np.array(by_name["probabilities"].contents.fp32_contents).reshape(want_probs.shape), want_probs, atol=1e-4)
    assert list(by_name["probabilities"].shape) == list(want_probs.shape), by_name["probabilities"]
    drift = json.loads(answer.parameters["drift"].string_param)
    assert drift["detector"] == "adwin", drift
    sent_back = dict(call.initial_metadata())
    assert sent_back["traceparent"].startswith("00-4bf92f3577b34da6a3ce929d0e0e4736-"), sent_back
    assert sent_back["traceparent"] != parent, sent_back
    assert sent_back.get("x-request-id"), sent_back

    # Errors are gRPC status codes with the server's message.
    expect_error(lambda: client.infer("nope", [inp], headers=auth), "NOT_FOUND", "does not exist")
    expect_error(lambda: client.get_model_metadata("nope", headers=auth), "NOT_FOUND", "does not exist")
    expect_error(lambda: client.infer("iris", [inp], model_version="9", headers=auth), "NOT_FOUND", "no version 9")
    bad = grpcclient.InferInput("float_input", [1, 3], "FP32")
    bad.set_data_from_numpy(np.zeros((1, 3), dtype=np.float32))
    expect_error(lambda: client.infer("iris", [bad], headers=auth), "INVALID_ARGUMENT", "shape")
    wrong_type = grpcclient.InferInput("float_input", list(rows.shape), "FP64")
    wrong_type.set_data_from_numpy(rows.astype(np.float64))
    expect_error(lambda: client.infer("iris", [wrong_type], headers=auth), "INVALID_ARGUMENT", "FP32")
    nan = grpcclient.InferInput("float_input", [1, 4], "FP32")
    nan.set_data_from_numpy(np.array([[np.nan, 1, 2, 3]], dtype=np.float32))
    expect_error(lambda: client.infer("iris", [nan], headers=auth), "INVALID_ARGUMENT", "finite")

    # Auth: no token, a bad one, and a role too small for the call.
    expect_error(lambda: client.is_server_live(), "UNAUTHENTICATED", "Bearer")
    expect_error(lambda: client.infer("iris", [inp], headers={"authorization": "Bearer not-a-token"}), "UNAUTHENTICATED")
    as_viewer = {"authorization": f"Bearer {viewer}"}
    assert client.get_model_metadata("iris", headers=as_viewer, as_json=True)["name"] == "iris"
    expect_error(lambda: client.infer("iris", [inp], headers=as_viewer), "PERMISSION_DENIED", "predict")
    expect_error(lambda: client.unload_model("iris", headers=as_viewer), "PERMISSION_DENIED", "deploy")

    # Repository extension: unload and load map onto undeploy and deploy.
    index = client.get_model_repository_index(headers=auth, as_json=True)
    assert {"name": "iris", "version": "1", "state": "READY"} in index["models"], index
    client.unload_model("iris", headers=auth)
    assert not client.is_model_ready("iris", headers=auth)
    expect_error(lambda: client.infer("iris", [inp], headers=auth), "FAILED_PRECONDITION", "no deployed version")
    index = client.get_model_repository_index(headers=auth, as_json=True)
    assert {"name": "iris", "version": "1", "state": "UNAVAILABLE", "reason": "undeployed"} in index["models"], index
    client.load_model("iris", headers=auth)
    assert client.is_model_ready("iris", headers=auth)
    result = client.infer("iris", [inp], headers=auth)
    assert np.array_equal(result.as_numpy("label"), want_labels)
    expect_error(lambda: client.load_model("ghost", headers=auth), "NOT_FOUND")

    # What maas does not serve answers UNIMPLEMENTED.
    expect_error(lambda: client.get_inference_statistics("iris", headers=auth), "UNIMPLEMENTED")
    print("tritonclient grpc: all checks passed")


if __name__ == "__main__":
    main()
