"""GGUF files as files: reading headers (bounded), quantization names, and whether a file fits here; and the
bounded readers for the TOML/CSV a person uploads (`text_formats`: prompt sets and task packs share them).

Nothing here loads weights or starts a process except to measure llama.cpp's fixed cost; `synthetic`
writes small random-weight models for measurements. May import `workbench.core` and `workbench.storage`.
"""
