# bnfold serving image: FastAPI + ONNX Runtime, no torch, non-root, one model inside.
#   docker build -t bnfold .                                          # the default digits model
#   docker build -t mine --build-arg MODEL=artifacts/mine/model.onnx .  # your own model inside
#   docker run -p 8000:8000 bnfold
#   docker run -v "$PWD/artifacts:/models:ro" -e MODEL_PATH=/models/x.onnx -p 8000:8000 bnfold
# See docs/deployment.md. CI builds and runs it for real: scripts/docker-smoke.sh.

# ---- builder: a venv holding only the runtime dependencies ------------------------------------
FROM python:3.11-slim AS builder

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1

WORKDIR /src
# Only pyproject.toml: this layer (the slow one) is rebuilt only when the dependencies change.
COPY pyproject.toml ./

# The base dependencies plus the `serve` extra, read from pyproject.toml, so there is one list
# to maintain; torch is in the `train` extra and never gets here. The venv is made without pip
# and setuptools (27 MB the server never loads): the base image's pip installs into it.
# Test suites and C headers go too, and the Pillow extensions (with the libraries only they
# load) that decoding PNG and JPEG never imports: AVIF, WebP, fonts, colour management, Tk
# (~11 MB). A PNG and a JPEG are decoded right after, so a Pillow release that needs one of
# them fails the build instead of the first upload.
RUN python -m venv --without-pip /opt/venv \
 && python -c "import tomllib; p = tomllib.load(open('pyproject.toml', 'rb'))['project']; print('\n'.join(p['dependencies'] + p['optional-dependencies']['serve']))" > requirements.txt \
 && python -m pip --python /opt/venv/bin/python install --no-cache-dir -r requirements.txt \
 && /opt/venv/bin/python -c "import importlib.util, sys; sys.exit(importlib.util.find_spec('torch') is not None)" \
 && find /opt/venv -depth -type d \( -name tests -o -name test \) -path '*/site-packages/*' -exec rm -rf {} + \
 && find /opt/venv -depth -type d -name include -path '*/site-packages/*' -exec rm -rf {} + \
 && pil=$(echo /opt/venv/lib/python3.*/site-packages/PIL) && libs="$pil/../pillow.libs" \
 && rm -f "$pil"/_avif.*.so "$pil"/_webp.*.so "$pil"/_imagingft.*.so "$pil"/_imagingcms.*.so \
          "$pil"/_imagingtk.*.so "$libs"/libavif-* "$libs"/libwebp* "$libs"/libsharpyuv-* \
          "$libs"/libfreetype-* "$libs"/libharfbuzz-* "$libs"/libbrotli* "$libs"/libpng16-* \
          "$libs"/liblcms2-* \
 && /opt/venv/bin/python -c "import io; from PIL import Image; [Image.open(io.BytesIO(b.getvalue()), formats=[f]).load() for f in ('PNG', 'JPEG') for b in [io.BytesIO()] if Image.new('RGB', (4, 4)).save(b, f) is None]"

# The code and the model, with permissions made readable by the service user whatever they
# were in the build context (atomic writes leave 0600 files; git checkouts give 0644), and the
# code byte-compiled (the root filesystem is read-only on Kubernetes). MODEL: a bnfold ONNX
# file below models/ or artifacts/ (.dockerignore lets those folders in, without checkpoints).
ARG MODEL=models/digits/model.onnx
COPY bnfold/ /app/bnfold/
COPY service/ /app/service/
COPY ${MODEL} /app/models/model.onnx
RUN python -m compileall -q /app/bnfold /app/service \
 && chmod -R u=rwX,go=rX /app

# ---- runtime --------------------------------------------------------------------------------
FROM python:3.11-slim AS runtime

LABEL org.opencontainers.image.title="bnfold-service" \
      org.opencontainers.image.description="Single-sample predictions from a BN-folded ONNX model (FastAPI + ONNX Runtime)" \
      org.opencontainers.image.licenses="MIT"

# Fixed numeric ids so Kubernetes' runAsNonRoot can verify the user without /etc/passwd.
RUN groupadd --system --gid 10001 bnfold \
 && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
            --shell /usr/sbin/nologin bnfold

# The service reads its settings from the environment (service/settings.py): HOST/PORT to bind,
# WORKERS uvicorn processes (1 per container: scale out with replicas; raise it for one big
# `docker run` host), ORT_INTRA_OP_THREADS per worker (default 1), MODEL_PATH the model served
# (the one built in; mount another and point MODEL_PATH at it). PIP_PYTHON: the base image's
# pip looks at the service's venv (`pip list`, `pip show torch`). XDG_CACHE_HOME: ONNX Runtime
# persists a telemetry device id there and logs a warning when it cannot (the user has no home;
# /tmp is an emptyDir on k8s).
ENV PATH=/opt/venv/bin:$PATH \
    PIP_PYTHON=/opt/venv/bin/python \
    XDG_CACHE_HOME=/tmp/.cache \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    MODEL_PATH=/app/models/model.onnx \
    HOST=0.0.0.0 \
    PORT=8000 \
    WORKERS=1

COPY --from=builder /opt/venv /opt/venv
COPY --from=builder /app /app
WORKDIR /app

USER 10001:10001
EXPOSE 8000

# Readiness, not liveness: healthy only once the model is loaded and checked against its card.
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:' + os.environ.get('PORT', '8000') + '/health/ready', timeout=2)"]

# Exec form: the server is PID 1 and gets SIGTERM from `docker stop` directly. A bad model or
# setting ends it before uvicorn starts, with status 2 and one line in `docker logs`.
CMD ["python", "-m", "service"]
