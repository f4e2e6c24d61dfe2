#!/usr/bin/env bash
# Installs the HTTP benchmark's Python peers from PyPI, each into its own venv:
#
#   target/bench-peers/mlserver   MLServer 1.7.1 + ONNX Runtime 1.31.1 (requirements-mlserver.txt)
#   target/bench-peers/pytriton   nvidia-pytriton 0.7.0 (Triton 2.51.0) + ONNX Runtime 1.31.1
#                                 (requirements-pytriton.txt)
#
#   benches/peers/install.sh               # both
#   benches/peers/install.sh mlserver      # one of them
#
# Idempotent: a venv whose installed requirements file matches the one here is left alone; a
# changed file is installed over it. PYTHON picks the interpreter (default python3; 3.11 or 3.12:
# ONNX Runtime 1.31 wants >= 3.11, MLServer 1.7.1 < 3.13). Run it with nothing else loading the
# cores if a benchmark is about to follow: pip compiles nothing here, but it unpacks ~800 MB.
set -euo pipefail
cd "$(dirname "$0")/../.."
PYTHON=${PYTHON:-python3}
peers=("$@")
[ ${#peers[@]} -gt 0 ] || peers=(mlserver pytriton)

"$PYTHON" -c 'import sys; sys.exit(not ((3, 11) <= sys.version_info[:2] <= (3, 12)))' || {
  echo "$PYTHON is $("$PYTHON" -V 2>&1): the peers need Python 3.11 or 3.12 (set PYTHON)" >&2
  exit 1
}

for peer in "${peers[@]}"; do
  requirements=benches/peers/requirements-$peer.txt
  venv=target/bench-peers/$peer
  [ -f "$requirements" ] || { echo "unknown peer $peer (mlserver or pytriton)" >&2; exit 1; }
  stamp=$venv/installed-requirements.txt
  if cmp -s "$requirements" "$stamp"; then
    echo "$venv: up to date"
    continue
  fi
  [ -x "$venv/bin/python" ] || "$PYTHON" -m venv "$venv"
  echo "$venv: installing $requirements"
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$requirements"
  cp "$requirements" "$stamp"
done
