# AgentTrace services image (gateway, proxy, streams, sinks, api, and the compose init job).
# Installs exactly what CI installs: the project constrained by requirements.lock.
FROM python:3.11.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    AGENTTRACE_HOST=0.0.0.0 \
    AGENTTRACE_HOME=/data

WORKDIR /app

# Dependencies first, in their own layer, so a code edit does not reinstall them.
COPY pyproject.toml requirements.lock ./
RUN pip install --upgrade pip==25.3 \
 && python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" > /tmp/deps.txt \
 && pip install -c requirements.lock -r /tmp/deps.txt

COPY . .
RUN pip install -c requirements.lock -e . \
 && useradd --system --uid 10001 --home-dir /data agenttrace \
 && mkdir -p /data /secrets \
 && chown agenttrace:agenttrace /data /secrets

USER agenttrace
# gateway, proxy, API, streams /metrics, sinks /metrics
EXPOSE 8080 4000 8090 9101 9102
ENTRYPOINT ["agenttrace"]
CMD ["--help"]
