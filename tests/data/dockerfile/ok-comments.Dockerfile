# Leading comment about the file.

ARG A=1

# About the first stage.
FROM alpine AS one
# Inside the first stage.
RUN true

# Between steps, after a blank line.
RUN false || true
#
# About the second stage.
FROM one
RUN echo two
# Trailing comment.
