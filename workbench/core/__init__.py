"""What every other part leans on: this install and this machine.

Where the workbench keeps its files (`paths`), what hardware there is (`hardware`), how busy the CPU
was during a timed window (`disturbance`), the per-machine memory of llama.cpp's CPU crash
(`crash_fallback`), the app process's heap housekeeping (`heap`), background jobs (`jobs`), temp folders
a killed process cannot leave behind for long (`scratch`), the words that explain each term (`glossary`) and the one
idiom for things that come in kinds (`registry`).
Imports nothing else from the workbench.
"""
