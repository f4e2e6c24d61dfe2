#!/usr/bin/env bash
# Triton through PyTriton (the venv benches/peers/install.sh makes) serving
# tests/fixtures/iris_logreg.onnx as `iris` (benches/peers/pytriton_iris.py), in the foreground:
#
#   benches/peers/pytriton.sh PORT     # HTTP on PORT, gRPC on PORT+1, metrics on PORT+2
#
# Stop it with SIGTERM or SIGINT to this script's pid: exec makes it the Python process's pid,
# which stops its tritonserver child (and that one's python-backend stub) before it exits.
set -euo pipefail
cd "$(dirname "$0")/../.."
PORT=${1:?usage: benches/peers/pytriton.sh PORT}
venv=target/bench-peers/pytriton
[ -x "$venv/bin/pytriton" ] || { echo "$venv is missing: run benches/peers/install.sh" >&2; exit 1; }
# Triton's python-backend stub links libpython3.X.so.1.0 and runs the venv's standard library: it
# must find the library of the Python the venv was made from, not another build of the same minor
# version that the system's library path offers first (Debian's libpython3.11 is 3.11.2; a pyenv
# 3.11.7 standard library on it fails in multiprocessing with "'_thread.RLock' object has no
# attribute '_recursion_count'"). PyTriton appends its own libraries to LD_LIBRARY_PATH.
libdir=$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_config_var("LIBDIR"))')
export LD_LIBRARY_PATH=$libdir${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
exec "$venv/bin/python" benches/peers/pytriton_iris.py --port "$PORT"
