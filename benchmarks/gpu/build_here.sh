#!/usr/bin/env bash
# Build the CUDA llama.cpp for the lent H100/H200 (sm_90) HERE, on the 2-core dev machine, and pack it into
# .gpu-built/ so that a device call spends seconds unpacking instead of 330 s building (h100.sh `build` unpacks it).
# Takes ~23 min of both cores (1,353 s on 2026-12-07). Same source (.gpu/llama_cpp_python-0.3.36.tar.gz), flags
# and targets as h100.sh `build`, except GGML_NATIVE=OFF: the CPU code is built for AVX2, not for this CPU.
#
# This machine has CUDA 13.0's nvcc (/usr/local/cuda-13.0) but neither cuBLAS nor the driver's link stub, so it
# adds both: cuBLAS 13.0 from PyPI's nvidia-cublas wheel, and a stub libcuda.so (soname libcuda.so.1) that
# defines the driver functions ggml-cuda calls, so the library records its need for the real driver. On the device
# the real libcuda.so.1 and the image's cuBLAS are found at load time (h100.sh links in any the loader misses).
# Both additions go into /usr/local/cuda-13.0 (files added, none replaced).
#   bash benchmarks/gpu/build_here.sh    # then carry [".gpu-built", ".whl", ".gpu/vocab.gguf"]
set -euo pipefail
REPO=$(pwd)
CUDA=/usr/local/cuda-13.0
[ -x $CUDA/bin/nvcc ] || { echo "no nvcc at $CUDA"; exit 1; }
if [ ! -f $CUDA/lib/libcublas.so.13 ]; then
  mkdir -p /tmp/cublas && .venv/bin/python -m pip download -q --no-deps "nvidia-cublas>=13.0,<13.1" -d /tmp/cublas
  unzip -q -o /tmp/cublas/nvidia_cublas-*.whl -d /tmp/cublas/x
  cp -n /tmp/cublas/x/nvidia/cu13/include/* $CUDA/include/
  cp -n /tmp/cublas/x/nvidia/cu13/lib/libcublas.so.13 /tmp/cublas/x/nvidia/cu13/lib/libcublasLt.so.13 $CUDA/lib/
  ln -sf libcublas.so.13 $CUDA/lib/libcublas.so && ln -sf libcublasLt.so.13 $CUDA/lib/libcublasLt.so
fi
# the driver functions ggml-cuda 0.3.36 calls (nm -D --undefined-only libggml-cuda.so | grep ' cu[A-Z]')
mkdir -p $CUDA/lib/stubs
for f in cuDeviceGet cuDeviceGetAttribute cuGetErrorString cuMemAddressFree cuMemAddressReserve cuMemCreate \
         cuMemGetAllocationGranularity cuMemMap cuMemRelease cuMemSetAccess cuMemUnmap; do
  echo "int $f(void) { return 0; }"
done > /tmp/libcuda-stub.c
gcc -shared -fPIC -Wl,-soname,libcuda.so.1 -o $CUDA/lib/stubs/libcuda.so /tmp/libcuda-stub.c

rm -rf /tmp/lbuild /tmp/lb && mkdir -p /tmp/lbuild && tar xzf .gpu/llama_cpp_python-0.3.36.tar.gz -C /tmp/lbuild
SRC=/tmp/lbuild/llama_cpp_python-0.3.36
SECONDS=0
cmake -S $SRC/vendor/llama.cpp -B /tmp/lb -DCMAKE_BUILD_TYPE=Release -DBUILD_SHARED_LIBS=ON -DLLAMA_CURL=OFF \
  -DLLAMA_BUILD_TOOLS=ON -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=OFF \
  -DGGML_CUDA=on -DCMAKE_CUDA_ARCHITECTURES=90 -DGGML_NATIVE=OFF \
  -DCMAKE_EXE_LINKER_FLAGS=-Wl,--allow-shlib-undefined > /tmp/lbuild/cmake.log 2>&1
cmake --build /tmp/lb --target llama llama-bench llama-batched-bench llama-perplexity -j "$(nproc)" \
  > /tmp/lbuild/build.log 2>&1 || { tail -30 /tmp/lbuild/build.log; exit 1; }
echo "built in ${SECONDS}s"
readelf -d /tmp/lb/bin/libggml-cuda.so | grep -q 'libcuda.so.1' || { echo "libggml-cuda.so does not ask for the driver"; exit 1; }

rm -rf /tmp/lcpp-site && mkdir -p /tmp/lcpp-site/llama_cpp/lib && cp -r $SRC/llama_cpp/* /tmp/lcpp-site/llama_cpp/
find /tmp/lb -name "*.so*" -exec cp -P {} /tmp/lcpp-site/llama_cpp/lib/ \;
echo "built on the dev machine from $(basename .gpu/llama_cpp_python-*.tar.gz), CUDA arch 90, GGML_NATIVE=OFF," \
  "$($CUDA/bin/nvcc --version | tail -1), $(date -u)" > /tmp/lcpp-site/BUILD_INFO
strip --strip-unneeded /tmp/lcpp-site/llama_cpp/lib/*.so* /tmp/lb/bin/llama-{bench,batched-bench,perplexity} 2>/dev/null || true
rm -rf "$REPO/.gpu-built" && mkdir -p "$REPO/.gpu-built"
(cd /tmp && tar cf - lcpp-site lb/bin/llama-bench lb/bin/llama-batched-bench lb/bin/llama-perplexity) \
  | xz -T"$(nproc)" -6 | split -b 15M -d - "$REPO/.gpu-built/prebuilt-cuda.tar.xz."
ls -la "$REPO/.gpu-built"; echo "packed in ${SECONDS}s"
