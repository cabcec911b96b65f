#!/bin/sh
. /opt/lib/log.sh
log "starting on port $PORT"
echo "$GREETING from $SERVICE"
