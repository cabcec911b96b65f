ARG V
FROM alpine:${V:?V_is_required}
ENV A=${B:=x}
WORKDIR ${}
