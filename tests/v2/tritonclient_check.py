"""Drive a running maas with the real tritonclient HTTP client (Open Inference Protocol).

Usage: python tritonclient_check.py HOST:PORT TOKEN EXPECTED_JSON

The server must serve model `iris` (tests/fixtures/iris_logreg.onnx) as version 1. Exits non-zero
with a message on the first check that fails; prints "tritonclient: all checks passed" otherwise.
"""

import json
import sys

import numpy as np
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException


def main() -> None:
    url, token, expected_path = sys.argv[1:4]
    expected = json.load(open(expected_path))["iris_logreg"]
    rows = np.array(expected["inputs"], dtype=np.float32)
    want_labels = np.array(expected["outputs"]["label"], dtype=np.int64)
    want_probs = np.array(expected["outputs"]["probabilities"], dtype=np.float32)
    # tritonclient writes its own headers into the dict it is given: pass a fresh one each call.
    auth = {"Authorization": f"Bearer {token}"}
    client = httpclient.InferenceServerClient(url=url)

    assert client.is_server_live(headers=dict(auth)), "server live"
    assert client.is_server_ready(headers=dict(auth)), "server ready"
    assert client.is_model_ready("iris", headers=dict(auth)), "model ready"
    assert client.is_model_ready("iris", "1", headers=dict(auth)), "version ready"
    meta = client.get_server_metadata(headers=dict(auth))
    assert meta["name"] == "maas", meta
    model = client.get_model_metadata("iris", headers=dict(auth))
    assert model["inputs"] == [{"name": "float_input", "datatype": "FP32", "shape": [-1, 4]}], model
    assert [o["name"] for o in model["outputs"]] == ["label", "probabilities"], model

    # The client's defaults: binary tensors both ways.
    for binary in (True, False):
        inp = httpclient.InferInput("float_input", list(rows.shape), "FP32")
        inp.set_data_from_numpy(rows, binary_data=binary)
        outputs = [
            httpclient.InferRequestedOutput("label", binary_data=binary),
            httpclient.InferRequestedOutput("probabilities", binary_data=binary),
        ]
        result = client.infer("iris", [inp], outputs=outputs, request_id=f"req-{binary}", headers=dict(auth))
        labels = result.as_numpy("label")
        probs = result.as_numpy("probabilities")
        assert np.array_equal(labels, want_labels), (binary, labels)
        assert np.allclose(probs, want_probs, atol=1e-4), (binary, probs)
        assert result.get_response()["id"] == f"req-{binary}", result.get_response()
        assert result.get_response()["model_version"] == "1"

    # No requested outputs: every output comes back. A version given explicitly.
    inp = httpclient.InferInput("float_input", list(rows.shape), "FP32")
    inp.set_data_from_numpy(rows)
    result = client.infer("iris", [inp], model_version="1", headers=dict(auth))
    assert np.array_equal(result.as_numpy("label"), want_labels)
    # Only one output when one is asked for.
    result = client.infer("iris", [inp], outputs=[httpclient.InferRequestedOutput("label")], headers=dict(auth))
    assert result.as_numpy("probabilities") is None

    # Errors come back as exceptions with the server's message.
    for call, needle in [
        (lambda: client.infer("nope", [inp], headers=dict(auth)), "does not exist"),
        (lambda: client.get_model_metadata("nope", headers=dict(auth)), "does not exist"),
        (lambda: client.is_server_live(), None),
    ]:
        try:
            answer = call()
        except InferenceServerException as e:
            assert needle is None or needle in str(e), str(e)
        else:
            # is_server_live without a token answers False rather than raising.
            assert needle is None and answer is False, answer
    bad = httpclient.InferInput("float_input", [1, 3], "FP32")
    bad.set_data_from_numpy(np.zeros((1, 3), dtype=np.float32))
    try:
        client.infer("iris", [bad], headers=dict(auth))
        raise AssertionError("a wrong shape was accepted")
    except InferenceServerException as e:
        assert "shape" in str(e), str(e)

    # Repository extension: unload and load map onto undeploy and deploy.
    index = client.get_model_repository_index(headers=dict(auth))
    assert {"name": "iris", "version": "1", "state": "READY", "reason": ""} in index, index
    client.unload_model("iris", headers=dict(auth))
    assert not client.is_model_ready("iris", headers=dict(auth))
    client.load_model("iris", headers=dict(auth))
    assert client.is_model_ready("iris", headers=dict(auth))
    print("tritonclient: all checks passed")


if __name__ == "__main__":
    main()
