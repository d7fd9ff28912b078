#!/bin/sh
# Entrypoint of the demo stack's Synapse (matrixdotorg/synapse image, run as
# root by docker-compose.yml): write homeserver.yaml from the environment,
# start Synapse as its unprivileged user (991), create the bot user, the human
# user and the room #demo:localhost on first start (kept on later starts),
# then mark the container ready. The compose health check needs both
# /health and that mark, so openagentio starts only once the users exist.
#
# Environment: SYNAPSE_REGISTRATION_SHARED_SECRET, MATRIX_BOT_PASSWORD,
# MATRIX_HUMAN_PASSWORD (required); SYNAPSE_SERVER_NAME (localhost),
# SYNAPSE_PUBLIC_BASEURL (http://localhost:8008/).
set -eu

DATA=/data
READY=/tmp/demo-ready
rm -f "$READY"

python /demo/matrix_demo.py config --dir "$DATA" \
    --server-name "${SYNAPSE_SERVER_NAME:-localhost}" \
    --bind 0.0.0.0 --port 8008 \
    --public-baseurl "${SYNAPSE_PUBLIC_BASEURL:-http://localhost:8008/}" \
    --log-level INFO >/dev/null
chown -R 991:991 "$DATA"

gosu 991:991 python -m synapse.app.homeserver --config-path "$DATA/homeserver.yaml" &
pid=$!
trap 'kill -TERM "$pid" 2>/dev/null || true' TERM INT

if python /demo/matrix_demo.py bootstrap --url http://127.0.0.1:8008 \
        --config "$DATA/homeserver.yaml" --timeout 120; then
    touch "$READY"
else
    echo "entrypoint: bootstrap failed; stopping Synapse" >&2
    kill -TERM "$pid" 2>/dev/null || true
fi

# `wait` returns early when a trapped signal arrives: wait until Synapse is gone.
status=0
while kill -0 "$pid" 2>/dev/null; do
    wait "$pid" || status=$?
done
[ -f "$READY" ] || exit 1
exit "$status"
