FROM scratch
WORKDIR /app
COPY missing.txt ./
