ARG X=1
RUN echo no stage
