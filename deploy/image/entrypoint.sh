#!/bin/sh
# The image's entry point, so that `docker run IMAGE payment` runs the payment service.
# Every process is configured by SETTLE_* environment variables (README "Configuration").
set -eu

usage() {
  cat >&2 <<'USAGE'
usage: docker run IMAGE PROCESS [ARGS...]
  payment | executor | wallet | ledger | reconciliation
                  run one service until SIGTERM (configured by SETTLE_* variables)
  migrate [SERVICE...]
                  apply database migrations to SETTLE_DATABASE_URL, then exit
  psp-sandbox [--host H] [--port P] [--data-dir D]
                  the Stripe-compatible PSP sandbox (development and CI only)
  settle COMMAND ...
                  any other `settle` command (dlq, audit, reconcile, ...)
USAGE
}

process="${1:-help}"
if [ "$#" -gt 0 ]; then
  shift
fi

# `exec` everywhere: the process becomes PID 1 and receives SIGTERM directly, which starts its own
# graceful shutdown (report NOT_SERVING, drain, commit offsets); a shell in between would swallow it.
case "$process" in
  payment | executor | wallet | ledger | reconciliation)
    exec python -m "services.$process"
    ;;
  migrate)
    exec settle migrate "$@"
    ;;
  psp-sandbox)
    exec python -m psp_sandbox "$@"
    ;;
  settle)
    exec settle "$@"
    ;;
  help | -h | --help)
    usage
    ;;
  *)
    echo "unknown process: $process" >&2
    usage
    exit 2
    ;;
esac
