"""MLServer custom runtime: tests/fixtures/iris_logreg.onnx on ONNX Runtime's CPU provider.

The same model file and the same engine as maas's ort-cpu backend, so that the benchmark compares
the servers around the model, not the models. `float_input` (FP32 [N,4]) in; `label` (INT64 [N])
and `probabilities` (FP32 [N,3]) out, decoded and encoded with MLServer's own NumPy codec.
"""

import numpy as np
import onnxruntime as ort
from mlserver import MLModel
from mlserver.codecs import NumpyCodec
from mlserver.errors import InferenceError
from mlserver.types import InferenceRequest, InferenceResponse
from mlserver.utils import get_model_uri


class IrisOnnxRuntime(MLModel):
    async def load(self) -> bool:
        # `parameters.uri` in model-settings.json, resolved against that file's folder.
        path = await get_model_uri(self._settings)
        # Default session options (ONNX Runtime's default intra-op threads), like maas's
        # ort-cpu backend with its defaults.
        self._session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
        self._output_names = [o.name for o in self._session.get_outputs()]
        return True

    async def predict(self, payload: InferenceRequest) -> InferenceResponse:
        request_input = next((i for i in payload.inputs if i.name == "float_input"), None)
        if request_input is None:
            raise InferenceError("missing input float_input")
        # The V2 datatype (FP32) and shape ([N, 4]) give the array's dtype and shape.
        features = NumpyCodec.decode_input(request_input).astype(np.float32, copy=False)
        results = self._session.run(self._output_names, {"float_input": features})
        return InferenceResponse(
            model_name=self.name,
            model_version=self.version,
            id=payload.id,
            outputs=[_encode(name, value) for name, value in zip(self._output_names, results)],
        )


def _encode(name: str, value: np.ndarray):
    output = NumpyCodec.encode_output(name, value)
    # The codec makes a 1-D array a column ([N] -> [N, 1]); keep the model's own shape, so that
    # `label` is INT64 [N] here as in maas's answer.
    output.shape = list(value.shape)
    return output
