FROM alpine:3.20
RUN apk add --no-cache ca-certificates curl tzdata \
 && update-ca-certificates
ENV TZ=UTC
CMD ["/bin/sh"]
