FROM golang:1.22
RUN go build -o /app .
FROM alpine
COPY --from=0 /app /app
FROM stage-1
COPY --from=1 /app /app2
