#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Run a long command and say every HEARTBEAT_SECONDS (default 60) that it is still running (the
# exhaustive model prints nothing for many minutes).  Exits with its status.
#   tools/with-heartbeat.sh LABEL COMMAND [ARGS...]
set -u
label=$1; shift
start=$(date +%s)
(
	while sleep "${HEARTBEAT_SECONDS:-60}"; do
		echo "$label: still running, $(( $(date +%s) - start )) s"
	done
) &
beat=$!
"$@"
rc=$?
kill "$beat" 2>/dev/null
wait "$beat" 2>/dev/null
exit $rc
