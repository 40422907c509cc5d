"""Running a prompt through contestants: local quantizations and remote endpoints, side by side.

`compare` runs one prompt through every contestant and stores the run; `jobs` runs that in the
background; `remote` speaks to OpenAI-compatible and llama.cpp servers; `fingerprint` guesses which
quantization an endpoint serves; `benchmark` checks our timings against llama-bench; `prompt_sets` reads
a user's prompts (lines, CSV, TOML, JSONL) and `set_runs` runs a set through the ladder as one resumable batch;
`noise` runs the reference again on a run's prompt for a noise floor (quality.noise_floor measures it).
May import `core`, `storage`, `files`, `engine`, `models`.
"""
