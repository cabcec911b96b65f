#!/bin/sh
. /opt/lib/log.sh
log "working on queue $QUEUE"
while read -r job; do echo "$QUEUE: done $job"; done
