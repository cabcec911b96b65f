FROM alpine AS builder
FROM builder
