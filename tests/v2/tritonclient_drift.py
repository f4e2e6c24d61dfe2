"""Send rows to a running maas with the real tritonclient HTTP client, binary tensors both ways,
and print what each answer says about drift.

Usage: python tritonclient_drift.py HOST:PORT TOKEN REQUESTS_JSON

REQUESTS_JSON is a list of {"rows": [[f, f, f, f], ...], "parameters": {...}} sent in order to
model `iris` (input `float_input`). Prints one JSON list: per request, the response's
`parameters.drift` (or null) and the labels it got back.
"""

import json
import sys

import numpy as np
import tritonclient.http as httpclient


def main() -> None:
    url, token, requests_path = sys.argv[1:4]
    client = httpclient.InferenceServerClient(url=url)
    answers = []
    for request in json.load(open(requests_path)):
        rows = np.array(request["rows"], dtype=np.float32)
        inp = httpclient.InferInput("float_input", list(rows.shape), "FP32")
        inp.set_data_from_numpy(rows, binary_data=True)
        outputs = [httpclient.InferRequestedOutput("label", binary_data=True)]
        result = client.infer(
            "iris",
            [inp],
            outputs=outputs,
            headers={"Authorization": f"Bearer {token}"},
            parameters=request.get("parameters") or None,
        )
        response = result.get_response()
        answers.append(
            {
                "drift": (response.get("parameters") or {}).get("drift"),
                "labels": result.as_numpy("label").tolist(),
            }
        )
    print(json.dumps(answers))


if __name__ == "__main__":
    main()
