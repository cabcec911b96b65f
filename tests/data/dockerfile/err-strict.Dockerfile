FROM alpine
ONBUILD RUN echo x
