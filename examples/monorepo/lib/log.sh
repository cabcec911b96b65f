# log MESSAGE: one line on stderr with the service's name.
log() { echo "${LOG_PREFIX:-app}/${SERVICE:-?}: $*" >&2; }
