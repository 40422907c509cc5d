"""Running llama.cpp: one worker process per loaded model, the protocol to it, and the warm pool.

`worker` is the only module that runs inference (`scoring` is its teacher-forcing arithmetic on logits
rows, numpy only); `pool` starts, talks to and evicts workers within
`memory_budget`; `access` is the one path every caller uses to get a loaded worker (load settings,
GPU offload, the crash fallback); `metrics` is what one run measured. May import `core`, `storage`, `files`.
"""
