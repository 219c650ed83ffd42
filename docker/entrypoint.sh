#!/bin/sh
# Entry commands of the reelflow image: api | worker | gpu-worker | migrate | reconcile |
# healthcheck,
# or any other command as given (e.g. `reelflow runs`).
set -eu
role="${1:-api}"
case "$role" in
  api)
    echo "api" > /tmp/reelflow-role
    exec reelflow api --host "${API_HOST:-0.0.0.0}" --port "${API_PORT:-8000}"
    ;;
  worker)
    name="worker@$(hostname)"
    echo "$name" > /tmp/reelflow-role
    exec reelflow worker --queues "${WORKER_QUEUES:-default}" --hostname "$name" \
      ${WORKER_CONCURRENCY:+--concurrency "$WORKER_CONCURRENCY"}
    ;;
  gpu-worker)
    name="gpu@$(hostname)"
    echo "$name" > /tmp/reelflow-role
    exec reelflow worker --queues gpu --concurrency "${GPU_WORKER_CONCURRENCY:-1}" \
      --hostname "$name"
    ;;
  migrate)
    exec reelflow db upgrade
    ;;
  reconcile)
    echo "reconciler" > /tmp/reelflow-role
    exec reelflow reconcile
    ;;
  healthcheck)
    role_file="$(cat /tmp/reelflow-role 2>/dev/null || echo none)"
    case "$role_file" in
      api) exec curl -fsS "http://127.0.0.1:${API_PORT:-8000}/readyz" -o /dev/null ;;
      reconciler) test -n "$(find /tmp/reelflow-reconciler.alive -mmin -2 2>/dev/null)" ;;
      *@*) exec celery -A reelflow inspect ping -d "$role_file" -t 5 ;;
      *) exit 0 ;;
    esac
    ;;
  *)
    exec "$@"
    ;;
esac
