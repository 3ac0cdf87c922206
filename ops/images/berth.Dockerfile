# Image of the Berth services for docker-compose.yml (one image, one service per container).
FROM python:3.11-slim
WORKDIR /opt/berth
COPY requirements.lock pyproject.toml README.md ./
COPY contracts contracts
COPY domain domain
COPY projections projections
COPY services services
RUN pip install --no-cache-dir -r requirements.lock && pip install --no-cache-dir --no-deps .
ENTRYPOINT ["python", "-m"]
