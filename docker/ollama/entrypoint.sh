#!/bin/sh
# Entrypoint of the `ollama` service (profile `llm`): serve, and pull
# $LLM_MODEL on first start (the model is kept in the ollama-models volume).
# The compose health check passes once the model is there.
set -eu
: "${LLM_MODEL:?set LLM_MODEL, e.g. qwen2.5:0.5b}"
ollama serve &
pid=$!
trap 'kill -TERM "$pid" 2>/dev/null || true' TERM INT
i=0
until ollama list >/dev/null 2>&1; do
    i=$((i + 1))
    [ "$i" -le 60 ] || { echo "ollama did not start" >&2; exit 1; }
    sleep 1
done
ollama pull "$LLM_MODEL"
status=0
while kill -0 "$pid" 2>/dev/null; do
    wait "$pid" || status=$?
done
exit "$status"
