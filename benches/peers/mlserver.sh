#!/usr/bin/env bash
# MLServer (the venv benches/peers/install.sh makes) serving tests/fixtures/iris_logreg.onnx as
# `iris` through the custom runtime in benches/peers/mlserver/, in the foreground:
#
#   benches/peers/mlserver.sh PORT     # HTTP on PORT, gRPC on PORT+1, metrics on PORT+2
#
# MLServer's defaults otherwise (settings.json only binds 127.0.0.1): parallel_workers 1 (one
# inference worker process beside the HTTP process), debug true (an access-log line per request;
# MLSERVER_DEBUG=false turns it off). Stop it with SIGTERM or SIGINT to this script's pid: exec
# makes it MLServer's own pid, and MLServer stops its worker processes before it exits.
set -euo pipefail
cd "$(dirname "$0")/../.."
PORT=${1:?usage: benches/peers/mlserver.sh PORT}
venv=target/bench-peers/mlserver
[ -x "$venv/bin/mlserver" ] || { echo "$venv is missing: run benches/peers/install.sh" >&2; exit 1; }
# MLServer keeps its multi-process metrics and its environments under the working directory by
# default (.metrics, .envs): keep them in target/, one folder per port.
state=target/bench-peers/state/mlserver-$PORT
mkdir -p "$state"
export MLSERVER_HTTP_PORT=$PORT MLSERVER_GRPC_PORT=$((PORT + 1)) MLSERVER_METRICS_PORT=$((PORT + 2))
export MLSERVER_METRICS_DIR=$state/metrics MLSERVER_ENVIRONMENTS_DIR=$state/envs
exec "$venv/bin/mlserver" start benches/peers/mlserver
