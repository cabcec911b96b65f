FROM nginx
HEALTHCHECK CMD curl -f http://localhost/ || exit 1
HEALTHCHECK --interval=1m30s --retries=5 CMD ["wget", "-q", "-O-", "http://localhost/"]
HEALTHCHECK NONE
