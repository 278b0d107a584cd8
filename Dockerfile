# yolo-qat on a CUDA base image: the same build as scripts/setup.sh.
#   docker build -t yolo-qat .
#   docker run --gpus all -v $PWD/runs:/app/runs yolo-qat quantize --weights W --data D
FROM nvidia/cuda:13.0.0-cudnn-runtime-ubuntu24.04
RUN apt-get update && apt-get install -y --no-install-recommends \
        python3 python3-venv python3-pip curl ca-certificates build-essential pkg-config git \
    && rm -rf /var/lib/apt/lists/*
RUN curl -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal
ENV PATH=/root/.cargo/bin:$PATH
WORKDIR /app
COPY . .
RUN scripts/setup.sh
ENTRYPOINT ["/app/dist/yolo-qat"]
