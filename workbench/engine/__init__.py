"""Running llama.cpp: one worker process per loaded model, the protocol to it, and the warm pool.

`worker` is the worker process and its request loop, the only process that runs inference; its parts, the
only modules here that call llama.cpp: `llama_model` (load, prompts), `generation`, `teacher_forcing` (the
score op; `scoring` is its arithmetic on logits rows, numpy only), `llama_log` (what llama.cpp logged) and
`process_memory`. `pool` starts, talks to and evicts workers within
`memory_budget`; `access` is the one path every caller uses to get a loaded worker (load settings,
GPU offload, the crash fallback); `metrics` is what one run measured. May import `core`, `storage`, `files`.
"""
