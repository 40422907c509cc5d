"""Running a prompt through contestants: local quantizations and remote endpoints, side by side.

`compare` runs one prompt through every contestant and stores the run; `jobs` runs that in the
background; `remote` speaks to OpenAI-compatible and llama.cpp servers; `fingerprint` guesses which
quantization an endpoint serves; `benchmark` checks our timings against llama-bench.
May import `core`, `storage`, `files`, `engine`, `models`.
"""
