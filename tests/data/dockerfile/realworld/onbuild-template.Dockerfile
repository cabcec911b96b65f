# An ONBUILD template stage and the app built from it, as language "onbuild" images did.
FROM python:3.12-slim AS python-onbuild
WORKDIR /usr/src/app
ONBUILD COPY requirements.txt ./
ONBUILD RUN pip install --no-cache-dir -r requirements.txt
ONBUILD COPY . .

FROM python-onbuild
ENV PORT=8000
EXPOSE ${PORT}
CMD ["python", "-m", "app"]
