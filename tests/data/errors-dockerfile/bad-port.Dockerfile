FROM scratch AS base
ENV A=1 \
    B=2
EXPOSE 8080 http
