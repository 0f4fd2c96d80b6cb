"""`hashfed-partner`: the click group (`main.py`), what its commands share (`context.py`) and the commands."""
