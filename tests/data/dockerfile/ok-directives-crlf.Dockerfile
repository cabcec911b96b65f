#SYNTAX = docker/dockerfile:1
# ESCAPE = \
#  check = error=true
# not a directive
# escape=`
FROM alpine
RUN echo \
 crlf
