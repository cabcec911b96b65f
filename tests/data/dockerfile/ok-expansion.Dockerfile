ARG BASE=alpine
ARG TAG=3.20
ARG FILE=/opt/app/archive.tar.gz
FROM ${BASE}:${TAG:-latest}
ARG FILE
ARG EMPTY=
ENV A=plain B=$FILE C=${FILE} D=${FILE:-dflt} E=${FILE-dflt} F=${FILE:+set} G=${FILE+set}
ENV H=${FILE#*/} I=${FILE##*/} J=${FILE%.*} K=${FILE%%.*} L=${FILE/opt/srv} M=${FILE//a/A}
ENV N="${FILE:?must be set}" O=${FILE?must_be_set}
ENV P='single $FILE' Q="double $FILE" R=escaped\$FILE S=lit\${x} T=$$ U=$1 V=${UNKNOWN_FROM_IMAGE}
ENV W="a \"quoted\" word" X=back\\slash Y=hash\#x Z="tab	here" UNI=日本語
LABEL description="${BASE} image built from ${TAG}"
WORKDIR ${HOME}/$EMPTY/work
USER ${UID:-1000}:${GID:-1000}
