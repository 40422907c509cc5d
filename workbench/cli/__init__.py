"""`workbench …`: the library, headless. `main` holds the parser and the shared commands; each other
module registers the commands of one concern. The top layer: may import everything, nothing imports it.
"""
