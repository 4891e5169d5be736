# The routeyard image: one image for workers, the gateway and the simulated farm.
FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
WORKDIR /app
COPY pyproject.toml README.md ./
COPY shared ./shared
COPY worker ./worker
COPY producer ./producer
RUN pip install . && useradd --create-home routeyard
USER routeyard
ENTRYPOINT ["routeyard"]
CMD ["--help"]
