"""GGUF files as files: reading headers (bounded), quantization names, and whether a file fits here.

Nothing here loads weights or starts a process except to measure llama.cpp's fixed cost; `synthetic`
writes small random-weight models for measurements. May import `workbench.core` and `workbench.storage`.
"""
