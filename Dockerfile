FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY fhir_server ./fhir_server
COPY profiles ./profiles
COPY adapters ./adapters
COPY pathways ./pathways
RUN pip install --no-cache-dir .
EXPOSE 8080
CMD ["python", "-m", "fhir_server", "serve", "--host", "0.0.0.0", "--port", "8080"]
