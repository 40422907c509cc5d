"""Getting models: the Hub, files already on disk, quantizing, and ladders (one model in several quantizations).

`hub` lists and downloads (the face of `hub_listing`, `hub_download` and their shared `hub_access`),
`discover` finds local GGUFs, `quantize` and `ladder` build and describe
ladders, `acquire` turns listings and downloads into ladders for the pages, `fit_report` checks the
fit prediction against stored runs, `demo_note` says why the demo ladder's figures look odd. May import `core`, `storage`, `files`, `engine`.
"""
