FROM scratch AS parent
ONBUILD COPY missing.txt /

FROM parent
CMD ["x"]
